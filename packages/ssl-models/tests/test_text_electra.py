import numpy as np
import pytest
import torch

from ssl_models.text import ELECTRA, IGNORE_INDEX, bert_tiny, discriminator_labels

VOCAB = 120


def _method(**kwargs):
    torch.manual_seed(0)
    return ELECTRA(bert_tiny(VOCAB, dropout=0.0), **kwargs)


def _batch():
    g = torch.Generator().manual_seed(1)
    original = torch.randint(5, VOCAB, (3, 10), generator=g)
    mask = torch.ones_like(original)
    mask[2, 7:] = 0
    original[2, 7:] = 0
    labels = torch.full_like(original, IGNORE_INDEX)
    masked = torch.zeros_like(original, dtype=torch.bool)
    masked[0, [1, 4]] = True
    masked[1, [0, 5, 9]] = True
    masked[2, [3]] = True
    labels[masked] = original[masked]
    ids = original.masked_fill(masked, 1)  # [MASK] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}, original, masked


def test_discriminator_labels_are_replaced_not_equal_original():
    original = torch.tensor([[4, 5, 6, 7, 0]])
    corrupted = torch.tensor(
        [[4, 9, 6, 7, 3]]
    )  # pos 1 replaced; pos 2 was masked but resampled as 6
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    assert discriminator_labels(corrupted, original, mask).tolist() == [[0, 1, 0, 0, 0]]


def test_corruption_only_touches_masked_positions_and_labels_follow_ids():
    method = _method()
    batch, original, masked = _batch()
    gen_loss, corrupted, orig = method.corrupt(batch)
    assert torch.equal(orig, original)
    assert torch.equal(corrupted[~masked], batch["input_ids"][~masked])
    assert bool((corrupted[masked] != 1).all())  # every [MASK] got a sampled token
    labels = discriminator_labels(corrupted, orig, batch["attention_mask"])
    assert torch.equal(labels.bool(), (corrupted != original) & (batch["attention_mask"] == 1))
    assert gen_loss.item() == pytest.approx(np.log(VOCAB), rel=0.1)  # untrained: ~uniform


def test_training_loss_is_generator_mlm_plus_lambda_bce_and_sampling_is_keyed():
    method = _method(discriminator_weight=50.0).eval()
    batch, _, _ = _batch()
    with torch.no_grad():
        loss = method.training_loss(batch).item()
        assert int(method.sample_calls) == 1
        method.sample_calls.zero_()  # the draw is a function of (seed, rank, counter)
        gen_loss, corrupted, original = method.corrupt(batch)
        mask = batch["attention_mask"].bool()
        scores = method.discriminator_head(method.encoder.forward_features(corrupted, mask))
    s = scores.squeeze(-1)[mask].double().numpy()
    y = (corrupted != original)[mask].double().numpy()
    bce = np.mean(np.logaddexp(0, s) - y * s)
    assert loss == pytest.approx(gen_loss.item() + 50.0 * bce, rel=1e-5)
    other = _method(seed=7)
    _, corrupted_other, _ = other.corrupt(batch)
    assert not torch.equal(corrupted_other, corrupted)


def test_embeddings_are_shared_and_both_networks_get_gradients():
    method = _method(generator_hidden_size=32, generator_layers=1)
    assert method.generator_head.embedding is method.encoder.word_embeddings
    state = method.state_dict()
    ptrs = [t.data_ptr() for t in state.values() if t.numel()]
    assert len(ptrs) == len(set(ptrs))
    batch, _, _ = _batch()
    method.training_loss(batch).backward()
    assert method.generator_project.weight.grad.abs().sum() > 0
    assert method.discriminator_head[0].weight.grad.abs().sum() > 0
    assert method.encoder.word_embeddings.weight.grad.abs().sum() > 0
    with pytest.raises(TypeError, match="BertEncoder-like"):
        from ssl_models.text import RecurrentEncoder

        ELECTRA(RecurrentEncoder(VOCAB, 8, 8))
