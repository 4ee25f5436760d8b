"""MLM masking (BERT arXiv:1810.04805, SpanBERT arXiv:1907.10529) on real WordNet glosses."""

import numpy as np
import pytest
import torch

from ssl_data.datasets.wordnet import bundled_sample_root, load_wordnet_glosses
from ssl_data.randomness import uniform
from ssl_data.text import (
    IGNORE_INDEX,
    MLMMasking,
    SpecialTokens,
    TextCollator,
    collate_encodings,
    sample_span_lengths,
    span_length_pmf,
    train_tokenizer,
)


@pytest.fixture(scope="module")
def glosses():
    return load_wordnet_glosses(bundled_sample_root()).texts


@pytest.fixture(scope="module")
def tok(glosses):
    return train_tokenizer(glosses, kind="wordpiece", vocab_size=3000)


@pytest.fixture(scope="module")
def batch_5_50(tok, glosses):
    """Two real glosses: one cut to 5 tokens, one to 50 ([CLS] and [SEP] included), padded."""
    long = [g for g in glosses if len(tok.encode(g).ids) > 60]
    enc5 = TextCollator(tok, max_length=5).encode([long[0]])
    enc50 = TextCollator(tok, max_length=50).encode([long[1]])
    return enc5 + enc50


def _real(batch):
    return (batch["attention_mask"] == 1) & (batch["special_tokens_mask"] == 0)


def _replicate(batch, n):
    return {k: v.repeat(n, 1) for k, v in batch.items()}


@pytest.mark.parametrize("strategy", ["token", "whole_word", "span"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_specials_and_padding_never_selected_at_099(tok, batch_5_50, strategy, padding_side):
    """The issue's test: lengths 5 and 50, p = 0.99, no PAD/CLS/SEP selected or changed."""
    batch = collate_encodings(batch_5_50, pad_id=0, padding_side=padding_side)
    assert batch["attention_mask"].sum(1).tolist() == [5, 50]
    sp = SpecialTokens.of(tok)
    ids = batch["input_ids"]
    protected = (ids == sp.pad_id) | (ids == sp.cls_id) | (ids == sp.sep_id)
    assert protected.sum() == 45 + 2 + 2  # 45 pads, [CLS] and [SEP] in both rows
    base = MLMMasking.from_tokenizer(tok, mask_probability=0.99, strategy=strategy)
    # Three ways to tell specials apart: both masks + ids, only ids + attention, only the mask.
    variants = [
        (base, dict(batch)),
        (base, {"input_ids": ids, "attention_mask": batch["attention_mask"], "word_ids": batch["word_ids"]}),
        (
            MLMMasking(mask_token_id=sp.mask_id, vocab_size=tok.get_vocab_size(),
                       mask_probability=0.99, strategy=strategy),
            {"input_ids": ids, "special_tokens_mask": batch["special_tokens_mask"], "word_ids": batch["word_ids"]},
        ),
    ]  # fmt: skip
    real = _real(batch)
    for masking, inputs in variants:
        selected_real = 0
        for epoch in range(40):
            out = masking.mask_batch(inputs, [7, 8], epoch)
            assert (out["labels"][protected] == IGNORE_INDEX).all()
            assert torch.equal(out["input_ids"][protected], ids[protected])
            sel = out["labels"] != IGNORE_INDEX
            assert torch.equal(out["labels"][sel], ids[sel])
            selected_real += int(sel[real].sum())
        # Nearly every real token is selected, so the protection above is not vacuous.
        assert selected_real / (40 * int(real.sum())) > 0.95


@pytest.mark.parametrize("strategy", ["token", "whole_word", "span"])
def test_masked_share_is_015(tok, batch_5_50, strategy):
    """At p = 0.15 the masked share of real tokens is 0.15 +- 0.01 (2,000 copies of the batch)."""
    batch = _replicate(collate_encodings(batch_5_50, pad_id=0), 2000)
    masking = MLMMasking.from_tokenizer(tok, strategy=strategy, seed=3)
    labels = masking.mask_batch(batch, np.arange(4000), epoch=0)["labels"]
    real = _real(batch)
    share = float((labels[real] != IGNORE_INDEX).float().mean())
    assert abs(share - 0.15) < 0.01, share
    assert (labels[~real] == IGNORE_INDEX).all()


def test_80_10_10(tok, glosses):
    collator = TextCollator(tok, max_length=64)
    batch = collator(glosses)
    masking = MLMMasking.from_tokenizer(tok, seed=1, mask_probability=0.5)
    out = masking.mask_batch(batch, np.arange(len(glosses)), epoch=0)
    sel = out["labels"] != IGNORE_INDEX
    n = int(sel.sum())
    assert n > 35000  # standard error of the 0.8 share: 0.002
    new, old = out["input_ids"][sel], batch["input_ids"][sel]
    is_mask = new == masking.mask_token_id
    kept = new == old
    random = ~is_mask & ~kept
    assert abs(float(is_mask.float().mean()) - 0.8) < 0.01
    assert abs(float(kept.float().mean()) - 0.1) < 0.01
    assert abs(float(random.float().mean()) - 0.1) < 0.01
    # Random replacements are ordinary tokens spread over the whole vocabulary.
    r = new[random]
    assert not np.isin(r.numpy(), masking.special_token_ids).any()
    assert r.min() >= len(masking.special_token_ids) and r.max() < tok.get_vocab_size()
    pool = tok.get_vocab_size() - len(masking.special_token_ids)
    expected_distinct = pool * (1 - (1 - 1 / pool) ** len(r))  # uniform draws over the pool
    assert abs(len(torch.unique(r)) / expected_distinct - 1) < 0.03
    # Unselected positions are untouched.
    assert torch.equal(out["input_ids"][~sel], batch["input_ids"][~sel])


@pytest.mark.parametrize("strategy", ["whole_word", "span"])
def test_whole_word_pieces_masked_together(tok, glosses, strategy):
    texts = glosses[:600]
    encodings = TextCollator(tok, max_length=128).encode(texts)
    batch = collate_encodings(encodings, pad_id=0, padding_side="left")
    masking = MLMMasking.from_tokenizer(tok, strategy=strategy, mask_probability=0.3)
    sel = (masking.mask_batch(batch, np.arange(len(texts)), 0)["labels"] != IGNORE_INDEX).numpy()
    multi_piece_selected = 0
    length = batch["input_ids"].shape[1]
    for row, enc in enumerate(encodings):
        offset = length - len(enc.ids)  # left padding
        words = {}
        for t, w in enumerate(enc.word_ids):
            if w is not None:
                words.setdefault(w, []).append(offset + t)
        for positions in words.values():
            states = sel[row, positions]
            assert states.all() or not states.any()
            multi_piece_selected += len(positions) > 1 and states.all()
    assert multi_piece_selected > 50


def test_token_strategy_splits_words(tok, glosses):
    """Control for the test above: token masking does cut words, so that test can fail."""
    encodings = TextCollator(tok, max_length=128).encode(glosses[:600])
    batch = collate_encodings(encodings, pad_id=0)
    sel = MLMMasking.from_tokenizer(tok, mask_probability=0.3).select(
        batch["input_ids"], np.arange(600), 0, attention_mask=batch["attention_mask"]
    )
    split = 0
    for row, enc in enumerate(encodings):
        w = np.array([-1 if x is None else x for x in enc.word_ids])
        for word in np.unique(w[w >= 0]):
            s = sel[row, np.flatnonzero(w == word)]
            split += s.any() and not s.all()
    assert split > 50


def test_span_length_distribution():
    u = uniform(0, 0, np.arange(200_000), 1, stream=9)[:, 0]
    lengths = sample_span_lengths(u)
    assert lengths.min() == 1 and lengths.max() == 10
    pmf = span_length_pmf()
    reference = 0.2 * 0.8 ** np.arange(10)
    np.testing.assert_allclose(pmf, reference / reference.sum())
    np.testing.assert_allclose(np.bincount(lengths, minlength=11)[1:] / len(u), pmf, atol=0.004)
    assert abs(lengths.mean() - 3.8) < 0.02  # SpanBERT, section 3.1: mean span length 3.8


def _runs(row):
    edges = np.diff(np.r_[0, row.astype(np.int8), 0])
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def test_span_masking_budget_and_span_lengths():
    """Token-level spans in long sequences: exact budget, contiguous runs of SpanBERT lengths."""
    rows, length = 400, 2000
    ids = torch.full((rows, length), 100, dtype=torch.int64)
    masking = MLMMasking(mask_token_id=4, vocab_size=1000, mask_probability=0.02, strategy="span")
    sel = masking.select(ids, np.arange(rows), 0)
    counts = sel.sum(1)
    assert set(np.unique(counts)) <= {40}  # budget = 0.02 * 2000 exactly
    runs = np.concatenate([_runs(r) for r in sel])
    # Runs are spans, shortened at the budget or merged with a neighbour now and then.
    assert 3.5 < runs.mean() < 4.1, runs.mean()
    assert (runs > 10).mean() < 0.02


def test_span_stops_at_special_tokens():
    ids = torch.full((300, 30), 100, dtype=torch.int64)
    ids[:, 0], ids[:, 10], ids[:, 29] = 2, 3, 3  # [CLS] a [SEP] b [SEP]
    masking = MLMMasking(mask_token_id=4, vocab_size=1000, special_token_ids=(0, 1, 2, 3, 4),
                         mask_probability=0.5, strategy="span")  # fmt: skip
    sel = masking.select(ids, np.arange(300), 0)
    assert not sel[:, [0, 10, 29]].any()
    assert sel[:, 1:10].any() and sel[:, 11:29].any()
    counts = sel.sum(1)  # budget: 0.5 x 27 real tokens, rounded up or down at random
    assert set(np.unique(counts)) == {13, 14} and abs(counts.mean() - 13.5) < 0.1


def test_determinism_and_padding_invariance(tok, glosses):
    masking = MLMMasking.from_tokenizer(tok, strategy="whole_word", seed=11)
    texts = glosses[100:108]

    def select(collator, idx, epoch, seed_masking=masking):
        b = collator(texts)
        sel = seed_masking.select(b["input_ids"], idx, epoch, special_tokens_mask=b["special_tokens_mask"],
                                  attention_mask=b["attention_mask"], word_ids=b["word_ids"])  # fmt: skip
        return [s[m.bool().numpy()] for s, m in zip(sel, b["attention_mask"])]

    right = select(TextCollator(tok), np.arange(8), 0)
    left = select(TextCollator(tok, padding_side="left", pad_to_multiple_of=64), np.arange(8), 0)
    again = select(TextCollator(tok), np.arange(8), 0)
    for a, b, c in zip(right, left, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    # A sample alone gives the same mask as inside the batch.
    alone = MLMMasking.from_tokenizer(tok, strategy="whole_word", seed=11)
    b = TextCollator(tok)(texts[3:4])
    s = alone.select(b["input_ids"], [3], 0, special_tokens_mask=b["special_tokens_mask"],
                     word_ids=b["word_ids"])  # fmt: skip
    np.testing.assert_array_equal(s[0], right[3])
    # Another epoch, index or seed gives another mask.
    flat = np.concatenate(right)
    for other in (
        select(TextCollator(tok), np.arange(8), 1),
        select(TextCollator(tok), np.arange(8) + 8, 0),
        select(
            TextCollator(tok),
            np.arange(8),
            0,
            MLMMasking.from_tokenizer(tok, strategy="whole_word", seed=12),
        ),
    ):
        assert (np.concatenate(other) != flat).sum() > 5


def test_bad_inputs(tok):
    with pytest.raises(ValueError, match="mask_probability"):
        MLMMasking.from_tokenizer(tok, mask_probability=1.5)
    with pytest.raises(ValueError, match="<= 1"):
        MLMMasking.from_tokenizer(tok, mask_replace_probability=0.9, random_replace_probability=0.2)
    with pytest.raises(ValueError, match="mask_token_id 9000"):
        MLMMasking(mask_token_id=9000, vocab_size=3000)
    masking = MLMMasking.from_tokenizer(tok, strategy="whole_word")
    ids = torch.full((2, 6), 50)
    with pytest.raises(ValueError, match="needs word_ids"):
        masking(ids, [0, 1], 0)
    with pytest.raises(ValueError, match=r"indices must be \(2,\)"):
        MLMMasking.from_tokenizer(tok)(ids, [0, 1, 2], 0)
    with pytest.raises(ValueError, match="attention_mask must have the shape"):
        MLMMasking.from_tokenizer(tok)(ids, [0, 1], 0, attention_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"strategy must be one of"):
        MLMMasking.from_tokenizer(tok, strategy="spans")
