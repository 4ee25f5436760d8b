"""Sentence pairs (BERT NSP) and padding collation, on real fortunes and WordNet glosses."""

import numpy as np
import pytest
import torch

from ssl_data.datasets.fortunes import bundled_sample_root as fortunes_sample
from ssl_data.datasets.fortunes import load_fortunes
from ssl_data.datasets.wordnet import bundled_sample_root as wordnet_sample
from ssl_data.datasets.wordnet import load_wordnet_glosses
from ssl_data.text import (
    NextSentencePairs,
    SpecialTokens,
    TextCollator,
    collate_encodings,
    collate_sentence_pairs,
    train_tokenizer,
)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(load_wordnet_glosses(wordnet_sample()).texts, vocab_size=3000)


@pytest.fixture(scope="module")
def fortunes():
    """Lines of real fortunes, each quotation a document."""
    data = load_fortunes(fortunes_sample())
    lines, docs = [], []
    for d, quote in enumerate(data.texts):
        for line in quote.split("\n"):
            if line.strip():
                lines.append(line.strip())
                docs.append(d)
    return lines, np.asarray(docs)


def test_pairs_follow_documents(fortunes):
    lines, docs = fortunes
    pairs = NextSentencePairs(lines, document_ids=docs, seed=5)
    # One pair per line that has a next line in its quotation.
    assert len(pairs) == sum(docs[i] == docs[i + 1] for i in range(len(docs) - 1))
    labels = []
    for k in range(len(pairs)):
        i, j, label = pairs.pair_indices(k)
        assert docs[i] == docs[i + 1]
        if label == 0:
            assert j == i + 1
        else:
            assert docs[j] != docs[i]  # a random line of another quotation
        labels.append(label)
        p = pairs[k]
        assert (p.first, p.second, p.next_sentence_label) == (lines[i], lines[j], label)
    share = np.mean(labels)
    assert abs(share - 0.5) < 4 * 0.5 / np.sqrt(len(labels))
    # Random seconds are spread over the corpus, not a few favourites.
    seconds = [pairs.pair_indices(k)[1] for k in range(len(pairs)) if labels[k]]
    assert len(set(seconds)) > 0.7 * len(seconds)


def test_pairs_are_seeded_per_epoch(fortunes):
    lines, docs = fortunes
    a = NextSentencePairs(lines, document_ids=docs, seed=5)
    b = NextSentencePairs(lines, document_ids=docs, seed=5)
    assert a[:200] == b[:200]
    assert [a[k] for k in (150, 3, 77)] == [b[k] for k in (150, 3, 77)]  # order does not matter
    b.set_epoch(1)
    changed = sum(x != y for x, y in zip(a[:200], b[:200]))
    assert changed > 50


def test_single_document_never_pairs_with_itself_or_next():
    lines = load_wordnet_glosses(wordnet_sample(), parts=["adv"]).texts[:50]
    pairs = NextSentencePairs(lines, random_next_probability=1.0)
    assert len(pairs) == 49
    for k in range(len(pairs)):
        i, j, label = pairs.pair_indices(k)
        assert label == 1 and j not in (i, i + 1) and 0 <= j < 50


def test_pair_errors():
    with pytest.raises(ValueError, match="contiguous"):
        NextSentencePairs(["a", "b", "c", "d"], document_ids=[0, 1, 0, 1])
    with pytest.raises(ValueError, match="at least 3"):
        NextSentencePairs(["a", "b"])
    with pytest.raises(ValueError, match="only one"):
        NextSentencePairs(["a", "b", "c"], document_ids=[0, 0, 0])
    with pytest.raises(IndexError, match="out of range"):
        NextSentencePairs(["a", "b", "c"])[2]


def test_collated_pairs_have_segments(tok, fortunes):
    lines, docs = fortunes
    pairs = NextSentencePairs(lines, document_ids=docs, seed=2)[:32]
    batch = collate_sentence_pairs(pairs, TextCollator(tok, max_length=128))
    sp = SpecialTokens.of(tok)
    assert batch["next_sentence_label"].tolist() == [p.next_sentence_label for p in pairs]
    for row, p in enumerate(pairs):
        a = tok.encode(p.first, add_special_tokens=False).ids
        b = tok.encode(p.second, add_special_tokens=False).ids
        n = len(a) + len(b) + 3
        assert batch["input_ids"][row, :n].tolist() == [sp.cls_id, *a, sp.sep_id, *b, sp.sep_id]
        assert batch["token_type_ids"][row, :n].tolist() == [0] * (len(a) + 2) + [1] * (len(b) + 1)
        assert batch["attention_mask"][row].sum() == n
        assert (batch["input_ids"][row, n:] == sp.pad_id).all()
        assert (batch["token_type_ids"][row, n:] == 0).all()


def test_left_and_right_padding_agree(tok):
    texts = load_wordnet_glosses(wordnet_sample(), parts=["verb"]).texts[:16]
    right = TextCollator(tok, padding_side="right")(texts)
    left = TextCollator(tok, padding_side="left", pad_to_multiple_of=8)(texts)
    assert left["input_ids"].shape[1] % 8 == 0
    assert right["input_ids"].shape[1] == max(len(tok.encode(t).ids) for t in texts)
    for key in ("input_ids", "token_type_ids", "special_tokens_mask", "word_ids"):
        for r_row, l_row, r_mask, l_mask in zip(
            right[key], left[key], right["attention_mask"], left["attention_mask"]
        ):
            assert torch.equal(r_row[r_mask.bool()], l_row[l_mask.bool()])
    lengths = right["attention_mask"].sum(1)
    for row, n in enumerate(lengths.tolist()):
        assert (left["attention_mask"][row, -n:] == 1).all() and (
            left["attention_mask"][row, :-n] == 0
        ).all()
        assert (left["special_tokens_mask"][row, :-n] == 1).all() and (
            left["word_ids"][row, :-n] == -1
        ).all()
    assert all(v.dtype == torch.int64 for v in left.values())


def test_truncation_and_tokenizer_untouched(tok):
    text = " ".join(load_wordnet_glosses(wordnet_sample(), parts=["noun"]).texts[:20])
    batch = TextCollator(tok, max_length=16)([text, (text, text)])
    assert batch["input_ids"].shape == (2, 16)
    assert batch["input_ids"][0, -1] == SpecialTokens.of(tok).sep_id
    # 13 places left beside 3 specials, shared longest-first between A and B: 6 + 7.
    assert batch["token_type_ids"][1].tolist().count(1) == 7 + 1  # B and its [SEP]
    assert tok.truncation is None and tok.padding is None  # the caller's tokenizer is left alone


def test_collate_errors(tok):
    with pytest.raises(ValueError, match="empty batch"):
        collate_encodings([], pad_id=0)
    with pytest.raises(ValueError, match="padding_side"):
        TextCollator(tok, padding_side="middle")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pair of texts"):
        TextCollator(tok)([("only one",)])  # type: ignore[list-item]
    bpe = train_tokenizer(["no pad token here"] * 10, kind="bpe", vocab_size=300)
    assert TextCollator(bpe).pad_id == 0  # GPT-2 convention: pad with <|endoftext|>
