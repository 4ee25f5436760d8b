"""Causal LM packing against an independent reference (numpy concatenate + reshape)."""

import numpy as np
import pytest
import torch

from ssl_data.datasets.fortunes import bundled_sample_root, load_fortunes
from ssl_data.text import (
    IGNORE_INDEX,
    SpecialTokens,
    iter_causal_blocks,
    pack_causal_blocks,
    train_tokenizer,
)


@pytest.fixture(scope="module")
def documents():
    """Real fortunes tokenised with a byte-level BPE trained on them: ``(ids list, eos id)``."""
    texts = load_fortunes(bundled_sample_root()).texts[:300]
    tok = train_tokenizer(texts, kind="bpe", vocab_size=1000)
    eos = SpecialTokens.of(tok).eos_id
    return [e.ids for e in tok.encode_batch(texts)], eos


def _reference(docs, block, eos, remainder, shift):
    stream = np.concatenate([np.r_[np.asarray(d, dtype=np.int64), eos] for d in docs])
    n_full = len(stream) // block
    n = n_full if remainder == "drop" else -(-len(stream) // block)
    ids = np.full(n * block, eos, dtype=np.int64)
    valid = min(len(stream), n * block)
    ids[:valid] = stream[:valid]
    if shift:
        following = np.r_[stream[1:], IGNORE_INDEX]
        labels = np.full(n * block, IGNORE_INDEX, dtype=np.int64)
        labels[:valid] = following[:valid]
    else:
        labels = np.where(np.arange(n * block) < valid, ids, IGNORE_INDEX)
    mask = (np.arange(n * block) < valid).astype(np.int64)
    return ids.reshape(n, block), labels.reshape(n, block), mask.reshape(n, block)


@pytest.mark.parametrize("block", [1, 7, 64, 2000])
@pytest.mark.parametrize("remainder", ["drop", "pad"])
@pytest.mark.parametrize("shift", [False, True])
def test_blocks_match_reference(documents, block, remainder, shift):
    docs, eos = documents
    ids, labels, mask = _reference(docs, block, eos, remainder, shift)
    out = pack_causal_blocks(docs, block, eos, remainder=remainder, shift_labels=shift)
    # The streaming path on the first 40 documents (one block per token is slow to stream).
    few = docs[:40]
    few_ref = _reference(few, block, eos, remainder, shift)
    streamed = list(iter_causal_blocks(few, block, eos, remainder=remainder, shift_labels=shift))
    for key, ref, ref_few in zip(
        ("input_ids", "labels", "attention_mask"), (ids, labels, mask), few_ref
    ):
        np.testing.assert_array_equal(out[key].numpy(), ref)
        np.testing.assert_array_equal(np.stack([b[key].numpy() for b in streamed]), ref_few)
        assert out[key].dtype == torch.int64 and out[key].shape == (len(ref), block)


def test_conventions_agree(documents):
    """Shifted labels are the unshifted labels moved one token left across block boundaries."""
    docs, eos = documents
    plain = pack_causal_blocks(docs, 50, eos)
    shifted = pack_causal_blocks(docs, 50, eos, shift_labels=True)
    flat_plain = plain["labels"].reshape(-1)
    flat_shift = shifted["labels"].reshape(-1)
    assert torch.equal(flat_shift[:-1], flat_plain[1:])
    # One end-of-text per document, every token kept in order.
    total = sum(len(d) + 1 for d in docs)
    assert plain["input_ids"].numel() == total // 50 * 50
    assert int((plain["input_ids"] == eos).sum()) == sum(
        1 for i in np.cumsum([len(d) + 1 for d in docs]) if i <= total // 50 * 50
    )


def test_pad_remainder_masks_padding(documents):
    docs, eos = documents
    total = sum(len(d) + 1 for d in docs)
    block = 128
    out = pack_causal_blocks(docs, block, eos, remainder="pad", pad_token_id=5)
    tail = total % block
    assert tail and out["input_ids"].shape[0] == total // block + 1
    assert (out["input_ids"][-1, tail:] == 5).all()
    assert (out["labels"][-1, tail:] == IGNORE_INDEX).all()
    assert out["attention_mask"][-1].sum() == tail and out["attention_mask"][:-1].all()


def test_streams_long_documents_lazily():
    """A generator of documents is consumed as blocks are asked for (constant memory)."""
    seen = []

    def docs():
        for i in range(10_000):
            seen.append(i)
            yield range(i * 10, i * 10 + 9)

    blocks = iter_causal_blocks(docs(), 20, eos_token_id=0)
    first = next(blocks)
    assert len(seen) <= 3
    np.testing.assert_array_equal(first["input_ids"][:10].numpy(), [*range(9), 0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        pack_causal_blocks([[1, 2]], 0, 0)
    with pytest.raises(ValueError, match="remainder must be one of"):
        pack_causal_blocks([[1, 2]], 4, 0, remainder="keep")  # type: ignore[arg-type]
    empty = pack_causal_blocks([[1, 2]], 8, 0)
    assert empty["input_ids"].shape == (0, 8)
