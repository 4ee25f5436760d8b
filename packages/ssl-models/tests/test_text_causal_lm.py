import numpy as np
import pytest
import torch

from ssl_models.text import IGNORE_INDEX, CausalLM, GPT2Decoder, accumulate_gradients, shift_labels

VOCAB = 200


def _method():
    torch.manual_seed(0)
    return CausalLM(GPT2Decoder(VOCAB, hidden_size=32, num_layers=2, num_heads=2, dropout=0.0))


def _loop_shift(labels):
    out = [[IGNORE_INDEX] * len(row) for row in labels]
    for b, row in enumerate(labels):
        for t in range(len(row) - 1):
            out[b][t] = row[t + 1]
    return out


def test_shift_labels_matches_loop_reference():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, VOCAB, (3, 8), generator=g)
    labels[0, 5:] = IGNORE_INDEX
    labels[1, :2] = IGNORE_INDEX
    assert shift_labels(labels).tolist() == _loop_shift(labels.tolist())


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.mark.parametrize("side", ["right", "left"])
def test_causal_lm_loss_is_next_token_cross_entropy(side):
    method = _method().eval()
    rows = [[5, 17, 44, 9, 120, 3], [8, 60, 2]]
    length = 6
    ids = torch.zeros(2, length, dtype=torch.int64)
    mask = torch.zeros(2, length, dtype=torch.int64)
    for b, r in enumerate(rows):
        cols = slice(0, len(r)) if side == "right" else slice(length - len(r), length)
        ids[b, cols], mask[b, cols] = torch.tensor(r), 1
    batch = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        loss = method.training_loss(batch).item()
        hidden = method.encoder.forward_features(ids, mask).double().numpy()
    table = method.encoder.word_embeddings.weight.detach().double().numpy()
    nll = []
    for b, r in enumerate(rows):
        start = 0 if side == "right" else length - len(r)
        for t in range(len(r) - 1):  # position t predicts token t + 1
            logp = _log_softmax(hidden[b, start + t] @ table.T)
            nll.append(-logp[r[t + 1]])
    assert len(nll) == 7 and method.num_loss_tokens(batch) == 7
    assert loss == pytest.approx(np.mean(nll), rel=1e-5)
    # Explicit HF-style labels (= input ids, -100 on padding) give the same loss.
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    with torch.no_grad():
        assert method.training_loss(dict(batch, labels=labels)).item() == pytest.approx(loss)


def test_causal_lm_accumulation_matches_full_batch():
    rows = [torch.arange(3, 3 + n) % VOCAB for n in (4, 11)]
    full_ids = torch.zeros(2, 11, dtype=torch.int64)
    full_mask = torch.zeros(2, 11, dtype=torch.int64)
    for b, r in enumerate(rows):
        full_ids[b, : len(r)], full_mask[b, : len(r)] = r, 1
    a, b = _method().double(), _method().double()
    a.training_loss({"input_ids": full_ids, "attention_mask": full_mask}).backward()
    accumulate_gradients(b, [{"input_ids": r[None]} for r in rows])
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        if pa.grad is not None:
            torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-5, atol=1e-12, msg=name)


def test_causal_lm_rejects_mismatched_encoder():
    from ssl_models.text import RecurrentEncoder

    with pytest.raises(TypeError, match="output width"):
        CausalLM(RecurrentEncoder(VOCAB, 16, 16))
