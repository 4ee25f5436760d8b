import numpy as np
import pytest
import torch

from ssl_models.text import (
    BERT_SIZES,
    BertEncoder,
    GPT2Decoder,
    MaskedLM,
    RecurrentEncoder,
    bert_tiny,
    packing_order,
    pool_tokens,
    position_ids_from_mask,
)

VOCAB = 1000


def _pad(rows, side, pad_id=0):
    """Collate token lists into (B, L) ids + mask, padded on `side`."""
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(rows), length), dtype=torch.int64)
    for i, r in enumerate(rows):
        cols = slice(0, len(r)) if side == "right" else slice(length - len(r), length)
        ids[i, cols] = torch.tensor(r)
        mask[i, cols] = 1
    return ids, mask


def _sentence_and_neighbour():
    g = torch.Generator().manual_seed(0)
    sentence = torch.randint(5, VOCAB, (7,), generator=g).tolist()
    neighbour = torch.randint(5, VOCAB, (100,), generator=g).tolist()
    return sentence, neighbour


@pytest.fixture(scope="module")
def encoders():
    torch.manual_seed(0)
    return {
        "bert": bert_tiny(VOCAB, dropout=0.0).eval(),
        "gpt2": GPT2Decoder(VOCAB, hidden_size=64, num_layers=2, num_heads=2, dropout=0.0).eval(),
        "lstm": RecurrentEncoder(VOCAB, 32, 48, num_layers=2, cell="lstm").eval(),
        "gru": RecurrentEncoder(VOCAB, 32, 48, num_layers=1, cell="gru").eval(),
    }


@pytest.mark.parametrize("side", ["right", "left"])
def test_pooled_embedding_alone_equals_inside_padded_batch(encoders, side):
    sentence, neighbour = _sentence_and_neighbour()
    alone_ids, alone_mask = _pad([sentence], side)
    ids, mask = _pad([neighbour, sentence], side)
    assert int(mask[1].sum()) == 7 and ids.shape == (2, 100)
    for name, enc in encoders.items():
        with torch.no_grad():
            alone_states = enc.forward_features(alone_ids, alone_mask)
            states = enc.forward_features(ids, mask)
            assert torch.equal(enc(ids, mask), pool_tokens(states, mask, enc.pooling))
        for pooling in ("mean", "max", "cls", "last"):
            alone = pool_tokens(alone_states, alone_mask, pooling)[0]
            both = pool_tokens(states, mask, pooling)
            diff = (alone - both[1]).abs().max().item()
            assert diff <= 1e-5, (name, side, pooling, diff)
            # The neighbour's embedding differs: the check is not comparing constants.
            assert (both[0] - both[1]).abs().max().item() > 1e-3, (name, pooling)


def test_mean_pooling_through_method_embed_matches_numpy_mean_of_token_states():
    sentence, neighbour = _sentence_and_neighbour()
    torch.manual_seed(1)
    method = MaskedLM(bert_tiny(VOCAB, dropout=0.0), pooling="mean").eval()
    ids, mask = _pad([neighbour, sentence], "left")
    with torch.no_grad():
        emb = method.embed({"input_ids": ids, "attention_mask": mask})
        states = method.encoder.forward_features(ids, mask).numpy()
    expected = states[1, -7:].mean(axis=0)
    np.testing.assert_allclose(emb[1].numpy(), expected, atol=1e-6)
    assert method.pooling == "mean" == method.encoder.pooling


def test_pool_tokens_reference_values():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    hidden[1, 0] = 100.0  # padding of row 1 (left padded) must not win the max
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    h = hidden.numpy()
    np.testing.assert_allclose(pool_tokens(hidden, mask, "mean")[0], h[0, :3].mean(0))
    np.testing.assert_allclose(pool_tokens(hidden, mask, "mean")[1], h[1, 1:].mean(0))
    np.testing.assert_allclose(pool_tokens(hidden, mask, "max")[1], h[1, 1:].max(0))
    np.testing.assert_allclose(pool_tokens(hidden, mask, "cls")[1], h[1, 1])
    np.testing.assert_allclose(pool_tokens(hidden, mask, "last")[0], h[0, 2])
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool_tokens(hidden, mask, "median")


def test_position_ids_and_packing_order():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]]).bool()
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 0]]
    assert packing_order(mask).tolist() == [[2, 3, 4, 0, 1], [0, 1, 2, 3, 4]]
    assert packing_order(mask, reverse=True).tolist() == [[4, 3, 2, 1, 0], [3, 2, 1, 0, 4]]


def test_bert_sizes_and_config():
    assert BERT_SIZES == {
        "tiny": (2, 128, 2),
        "mini": (4, 256, 4),
        "small": (4, 512, 8),
        "base": (12, 768, 12),
    }
    enc = bert_tiny(30522)
    assert enc.output_dim == 128 and enc.config.num_hidden_layers == 2
    assert enc.config.intermediate_size == 512
    assert enc.word_embeddings.weight.shape == (30522, 128)
    # 30522 x 128 embeddings + 512 positions + 2 segments, LN; 2 blocks of 12 * 128^2 + biases.
    n = sum(p.numel() for p in enc.parameters())
    assert n == 30522 * 128 + 512 * 128 + 2 * 128 + 2 * 128 + 2 * (12 * 128 * 128 + 13 * 128)
    with pytest.raises(TypeError, match="fixes hidden_size"):
        bert_tiny(100, hidden_size=64)


def test_bad_batches_raise():
    enc = BertEncoder(50, hidden_size=16, num_layers=1, num_heads=2, max_position_embeddings=8)
    with pytest.raises(ValueError, match="integer token ids"):
        enc(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="rows \\[1\\] have none"):
        enc(torch.ones(2, 3, dtype=torch.long), torch.tensor([[1, 1, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=8"):
        enc(torch.ones(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="must divide"):
        BertEncoder(50, hidden_size=10, num_heads=3)


def test_recurrent_directions_are_causal_and_anticausal():
    torch.manual_seed(0)
    enc = RecurrentEncoder(50, 8, 12, num_layers=2).eval()
    ids = torch.randint(1, 50, (1, 9))
    changed = ids.clone()
    changed[0, 5] = (ids[0, 5] + 1) % 49 + 1
    with torch.no_grad():
        f1, b1 = enc.forward_directions(ids)
        f2, b2 = enc.forward_directions(changed)
    assert b1 is not None and b2 is not None
    # Changing token 5: forward states before 5 and backward states after 5 do not move.
    torch.testing.assert_close(f1[0, :5], f2[0, :5], rtol=0, atol=0)
    torch.testing.assert_close(b1[0, 6:], b2[0, 6:], rtol=0, atol=0)
    assert (f1[0, 5:] - f2[0, 5:]).abs().max() > 1e-4
    assert (b1[0, :6] - b2[0, :6]).abs().max() > 1e-4
    assert enc.output_dim == 24 and enc(ids).shape == (1, 24)
