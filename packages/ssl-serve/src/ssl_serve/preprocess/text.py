"""Text preprocessing on the server: tokenisation, truncation, length-sorted padded sub-batches.

Follows a bundle's :class:`~ssl_serve.bundle.TextPreprocessing`: tokenise with the bundle's
`tokenizer.json` (the Hugging Face ``tokenizers`` library, Rust, no torch) with the special tokens
its post-processor adds (e.g. ``[CLS] ... [SEP]`` for BERT), truncate to ``max_length`` tokens
special tokens included, and pad per sub-batch. Padding and truncation settings stored in the
tokenizer file are replaced by the server's (all-MiniLM-L6-v2's file pads every input to 128).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from ssl_serve.errors import BundleError, InvalidInputError

TOKEN_ID_DTYPES = ("int32", "int64")


@dataclass(frozen=True)
class TokenizedTexts:
    """Token sequences of a batch of texts, unpadded.

    Attributes:
        ids: N arrays ``(L_i,) int64`` of token ids, special tokens included, L_i <= max length.
        type_ids: N arrays ``(L_i,) int64`` of token type (segment) ids.
        truncated: ``(N,) bool``: whether text i lost tokens to truncation.
    """

    ids: list[np.ndarray]
    type_ids: list[np.ndarray]
    truncated: np.ndarray

    @property
    def num_tokens(self) -> int:
        """Tokens fed to the model, special tokens included, padding excluded."""
        return sum(len(x) for x in self.ids)


class TextTokenizer:
    """A bundle's tokenizer with the server's truncation and no padding.

    Args:
        path: The bundle's `tokenizer.json`.
        max_length: Longest sequence in tokens, special tokens counted (>= 2).

    Raises:
        BundleError: The file is missing or not a tokenizers JSON file.
        ValueError: ``max_length`` < 2.
    """

    def __init__(self, path: str | Path, max_length: int) -> None:
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 tokens, got {max_length}")
        self.path = Path(path)
        self.max_length = max_length
        if not self.path.is_file():
            raise BundleError(self.path, "tokenizer file does not exist")
        try:
            self.tokenizer = Tokenizer.from_file(str(self.path))
        except Exception as e:  # tokenizers raises plain Exception for bad files
            raise BundleError(self.path, f"tokenizers cannot load it: {e}") from e
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self.vocab_size = self.tokenizer.get_vocab_size(with_added_tokens=True)

    def tokenize(self, texts: Sequence[str]) -> TokenizedTexts:
        """Tokenise texts (in parallel, in the tokenizers library).

        Args:
            texts: N strings; an empty string becomes the special tokens alone.

        Returns:
            The token sequences and per-text truncation flags.
        """
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=True)
        return TokenizedTexts(
            ids=[np.asarray(e.ids, dtype=np.int64) for e in encodings],
            type_ids=[np.asarray(e.type_ids, dtype=np.int64) for e in encodings],
            truncated=np.asarray([len(e.overflowing) > 0 for e in encodings], dtype=bool),
        )


def decode_token_ids(
    dtype: str,
    shape: Sequence[int],
    data: bytes,
    *,
    max_length: int,
    vocab_size: int,
    index: int | None = None,
) -> np.ndarray:
    """Decode one already tokenised text sent as a tensor (int32 or int64 token ids).

    Args:
        dtype: "int32" or "int64".
        shape: ``(L,)`` with 1 <= L <= ``max_length``: one sequence, special tokens included.
        data: Little-endian contents, ``L * itemsize`` bytes.
        max_length: The bundle's longest sequence, in tokens.
        vocab_size: Ids must lie in ``[0, vocab_size)``.
        index: Position of the input in its request, named in errors.

    Returns:
        ``(L,) int64`` token ids.

    Raises:
        InvalidInputError: Another dtype or rank, an empty or too long sequence, a byte count that
            does not match the shape, or an id outside the vocabulary.
    """
    if dtype not in TOKEN_ID_DTYPES:
        raise InvalidInputError(
            f"token id tensor dtype is {dtype!r}; a text model takes {list(TOKEN_ID_DTYPES)}",
            index=index,
        )
    if len(shape) != 1 or not 1 <= shape[0] <= max_length:
        raise InvalidInputError(
            f"token id tensor shape is {list(shape)}; a text model takes [L] with "
            f"1 <= L <= {max_length} (one sequence, special tokens included)",
            index=index,
        )
    itemsize = np.dtype(dtype).itemsize
    if len(data) != shape[0] * itemsize:
        raise InvalidInputError(
            f"token id tensor data is {len(data)} bytes; shape {list(shape)} {dtype} needs "
            f"{shape[0] * itemsize}",
            index=index,
        )
    ids = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).astype(np.int64)
    bad = (ids < 0) | (ids >= vocab_size)
    if bad.any():
        raise InvalidInputError(
            f"token id {int(ids[bad][0])} at position {int(np.flatnonzero(bad)[0])} is outside "
            f"the vocabulary [0, {vocab_size})",
            index=index,
        )
    return ids


def length_sorted_batches(
    lengths: Sequence[int],
    *,
    max_batch_size: int,
    max_batch_tokens: int,
    max_padding: float = 0.1,
    padding_slack: int = 8,
) -> list[np.ndarray]:
    """Group sequences by length so each padded sub-batch wastes little compute on padding.

    Sorts by length (stable) and cuts consecutive runs of at most ``max_batch_size`` sequences
    whose padded size (count x longest length) stays within ``max_batch_tokens`` and whose
    padding stays within ``max_padding`` of the padded size or ``padding_slack`` tokens,
    whichever is larger (so short texts do not pay for a long neighbour, and similar lengths
    still share one run). A single sequence always forms a batch.

    The defaults come from all-MiniLM-L6-v2 on one CPU thread (real WordNet glosses, 18.7
    tokens on average): a ``session.run`` costs about as much as 12 padded tokens, so
    allowing 8 tokens or 10% of padding per run was the fastest of the settings tried for the
    24-32 texts the server merges at once (1.08 padded tokens per real token, about 8%
    faster than 25% / 64 tokens).

    Args:
        lengths: N sequence lengths, in tokens.
        max_batch_size: Most sequences per sub-batch (>= 1).
        max_batch_tokens: Most padded tokens per sub-batch (>= 1).
        max_padding: Largest fraction of a sub-batch's padded tokens that may be padding.
        padding_slack: Padding tokens always allowed per sub-batch.

    Returns:
        Index arrays into ``lengths``, ``int64``, which together hold every index once.

    Raises:
        ValueError: A limit is < 1.
    """
    if max_batch_size < 1 or max_batch_tokens < 1:
        raise ValueError(
            f"max_batch_size ({max_batch_size}) and max_batch_tokens ({max_batch_tokens}) "
            "must be >= 1"
        )
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    real = 0  # tokens of the run [start, end)
    for end in range(1, len(order) + 1):
        # Ascending order: the last sequence of a run is its longest.
        count = end - start
        longest = int(lengths[order[end - 1]])
        real += longest
        padded = count * longest
        waste = padded - real
        if count > 1 and (
            count > max_batch_size
            or padded > max_batch_tokens
            or waste > max(max_padding * padded, padding_slack)
        ):
            batches.append(order[start : end - 1])
            start = end - 1
            real = longest
    if start < len(order):
        batches.append(order[start:])
    return batches


def pad_sequences(sequences: Sequence[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token sequences to the longest one.

    Args:
        sequences: B arrays ``(L_i,) int64`` (B >= 1).
        pad_id: Value written at padded positions.

    Returns:
        ``(B, max L_i) int64`` padded values and ``(B, max L_i) int64`` attention mask (1 for
        real tokens, 0 for padding).
    """
    longest = max(len(s) for s in sequences)
    values = np.full((len(sequences), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), longest), dtype=np.int64)
    for i, s in enumerate(sequences):
        values[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return values, mask
