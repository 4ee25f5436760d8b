import numpy as np
import pytest
import torch

from ssl_models.text import (
    IGNORE_INDEX,
    MaskedLM,
    accumulate_gradients,
    bert_tiny,
    total_loss_tokens,
)

VOCAB = 300


def _method(seed=0):
    torch.manual_seed(seed)
    enc = bert_tiny(VOCAB, dropout=0.0, max_position_embeddings=64)
    return MaskedLM(enc, pooling="cls")


def _fixed_batch():
    ids = torch.tensor([[2, 17, 45, 99, 3, 0, 0], [2, 201, 5, 66, 12, 150, 3]])
    mask = (ids != 0).long()
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, 2] = 45
    ids = ids.clone()
    ids[0, 2] = 1  # [MASK]
    labels[1, 1], labels[1, 4], labels[1, 5] = 201, 12, 150
    ids[1, 1], ids[1, 5] = 1, 1  # position 4 keeps its token (BERT's 10% "unchanged")
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_mlm_loss_equals_reference_cross_entropy_over_masked_positions_only():
    method = _method().eval()
    batch = _fixed_batch()
    with torch.no_grad():
        loss = method.training_loss(batch).item()
        logits = method.logits(batch).double().numpy()  # every position, independent path
    logp = _log_softmax(logits)
    labels = batch["labels"].numpy()
    picked = [-logp[b, t, labels[b, t]] for b, t in zip(*np.nonzero(labels != -100), strict=True)]
    assert len(picked) == 4
    assert loss == pytest.approx(np.mean(picked), rel=1e-5)
    # Over all real positions (what ignoring nothing would give) the value is different.
    real = batch["attention_mask"].numpy().astype(bool)
    ids = torch.where(batch["labels"] >= 0, batch["labels"], batch["input_ids"]).numpy()
    every = np.mean([-logp[b, t, ids[b, t]] for b, t in zip(*np.nonzero(real), strict=True)])
    assert abs(every - loss) > 1e-3
    # Unmasked positions' labels are never read: any other ignored label leaves the loss.
    total, count = method.loss_sum(batch)
    assert int(count) == 4 == method.num_loss_tokens(batch)
    assert total.item() / 4 == pytest.approx(loss, rel=1e-6)


def test_labels_outside_vocabulary_and_missing_labels_raise():
    method = _method()
    batch = _fixed_batch()
    with pytest.raises(KeyError, match="no 'labels'"):
        method.training_loss({k: v for k, v in batch.items() if k != "labels"})
    bad = dict(batch, labels=batch["labels"].masked_fill(batch["labels"] == 45, VOCAB))
    with pytest.raises(ValueError, match=f"ids in \\[0, {VOCAB}\\)"):
        method.training_loss(bad)
    with pytest.raises(TypeError, match="dict batch"):
        method.training_loss([batch["input_ids"]])


def _sentences():
    g = torch.Generator().manual_seed(3)
    out = []
    for length, n_masked in ((5, 1), (9, 2), (14, 4), (23, 7)):
        ids = torch.randint(5, VOCAB, (length,), generator=g)
        labels = torch.full_like(ids, IGNORE_INDEX)
        pos = torch.randperm(length, generator=g)[:n_masked]
        labels[pos] = ids[pos]
        ids = ids.clone()
        ids[pos] = 1
        out.append((ids, labels))
    return out


def _collate(rows):
    length = max(len(i) for i, _ in rows)
    ids = torch.zeros(len(rows), length, dtype=torch.int64)
    labels = torch.full((len(rows), length), IGNORE_INDEX)
    mask = torch.zeros(len(rows), length, dtype=torch.int64)
    for r, (i, lab) in enumerate(rows):
        ids[r, : len(i)], labels[r, : len(i)], mask[r, : len(i)] = i, lab, 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _grads(method):
    return {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}


def test_gradient_accumulation_over_variable_length_micro_batches_is_exact():
    # float64, so that what is compared is the normalisation, not float32 summation order
    # (in float32 the two gradients differ by ~1e-7 absolute, i.e. rounding).
    rows = _sentences()
    full_method = _method(seed=5).double()
    full = _collate(rows)
    full_method.training_loss(full).backward()
    expected = _grads(full_method)

    acc_method = _method(seed=5).double()
    micro = [_collate([r]) for r in rows]  # 4 micro-batches of lengths 5, 9, 14, 23
    assert total_loss_tokens(acc_method, micro) == 14
    step_loss = accumulate_gradients(acc_method, micro)
    got = _grads(acc_method)
    assert expected.keys() == got.keys() and len(got) > 10
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-12, msg=name)
    with torch.no_grad():
        assert step_loss.item() == pytest.approx(full_method.training_loss(full).item(), rel=1e-5)

    # Averaging per-micro-batch means (the naive recipe) gives a different gradient.
    naive = _method(seed=5).double()
    for b in micro:
        (naive.training_loss(b) / len(micro)).backward()
    weight = "encoder.bert.embeddings.word_embeddings.weight"
    assert not torch.allclose(_grads(naive)[weight], expected[weight], rtol=1e-3, atol=1e-6)


def test_state_dict_has_no_shared_tensors_and_head_is_tied():
    method = _method()
    state = method.state_dict()
    ptrs = [t.data_ptr() for t in state.values()]
    assert len(ptrs) == len(set(ptrs))  # safetensors refuses shared storage
    assert not any(
        k.startswith("lm_head") and "weight" in k and "transform" not in k for k in state
    )
    assert method.lm_head.embedding is method.encoder.word_embeddings
    batch = _fixed_batch()
    method.training_loss(batch).backward()
    # The tied table gets the decoder's gradient at rows never seen in the input.
    grad = method.encoder.word_embeddings.weight.grad
    assert grad is not None and grad[250].abs().sum() > 0


def test_tie_survives_deepcopy_and_dtype_moves():
    import copy

    method = _method()
    clone = copy.deepcopy(method)
    assert clone.lm_head.embedding is clone.encoder.word_embeddings
    assert clone.lm_head.embedding is not method.encoder.word_embeddings
    method.double()
    assert method.lm_head.embedding.weight.dtype == torch.float64
    with torch.no_grad():
        assert method.logits(_fixed_batch()).dtype == torch.float64
