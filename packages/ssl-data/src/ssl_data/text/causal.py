"""Causal language modelling: pack tokenised documents into fixed-length blocks.

Documents are concatenated into one stream, each followed by the end-of-text token (GPT-2's
``<|endoftext|>``), and the stream is cut into blocks of ``block_size`` tokens, as in GPT-2
(Radford et al. 2019) and Hugging Face's ``run_clm`` ``group_texts``. Attention is not cut at
document boundaries inside a block (the end-of-text token tells the model where one ends).

Labels come in one of two conventions, chosen by ``shift_labels``:

- ``False`` (default, the Hugging Face convention): ``labels`` equal ``input_ids`` (-100 on
  padding); the model shifts them, predicting ``labels[t + 1]`` from positions ``<= t``.
- ``True``: ``labels[t]`` is the token that follows ``input_ids[t]`` in the stream, so the loss
  is a plain per-position cross-entropy. The last position of a block gets the first token of the
  next block (the true next token); at the very end of the stream it gets -100.

The tail shorter than one block is dropped (``remainder="drop"``, run_clm's rule) or kept as a
last block padded with ``pad_token_id``, ``labels`` -100 and ``attention_mask`` 0 on the padding
(``remainder="pad"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Literal, get_args

import numpy as np
import torch

from ssl_data.text.mlm import IGNORE_INDEX

Remainder = Literal["drop", "pad"]


def iter_causal_blocks(
    documents: Iterable[Sequence[int] | np.ndarray],
    block_size: int,
    eos_token_id: int,
    *,
    remainder: Remainder = "drop",
    pad_token_id: int | None = None,
    shift_labels: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Stream fixed-length causal LM blocks from tokenised documents (constant memory).

    Args:
        documents: Token id sequences, one per document (without end-of-text; it is appended).
        block_size: Tokens per block.
        eos_token_id: End-of-text id appended after every document.
        remainder: ``"drop"`` the final partial block, or ``"pad"`` it (see module docstring).
        pad_token_id: Padding id for ``remainder="pad"`` (default ``eos_token_id``, GPT-2's
            convention; padded positions are masked out of attention and loss anyway).
        shift_labels: ``False``: labels = input ids (the model shifts); ``True``: labels are the
            next tokens (see module docstring).

    Yields:
        ``{"input_ids", "labels", "attention_mask"}``, each ``(block_size,) int64``.

    Raises:
        ValueError: ``block_size`` < 1 or an unknown ``remainder``.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1 token, got {block_size}")
    if remainder not in get_args(Remainder):
        raise ValueError(f"remainder must be one of {get_args(Remainder)}, got {remainder!r}")
    pad = eos_token_id if pad_token_id is None else pad_token_id
    lookahead = 1 if shift_labels else 0
    buffer: list[int] = []

    def block(tokens: list[int], next_tokens: list[int]) -> dict[str, torch.Tensor]:
        n = len(tokens)
        ids = np.full(block_size, pad, dtype=np.int64)
        ids[:n] = tokens
        labels = np.full(block_size, IGNORE_INDEX, dtype=np.int64)
        if shift_labels:
            following = tokens[1:] + next_tokens[:1]
            labels[: len(following)] = following
        else:
            labels[:n] = tokens
        mask = np.zeros(block_size, dtype=np.int64)
        mask[:n] = 1
        return {
            "input_ids": torch.from_numpy(ids),
            "labels": torch.from_numpy(labels),
            "attention_mask": torch.from_numpy(mask),
        }

    start = 0
    for doc in documents:
        buffer.extend(int(t) for t in doc)
        buffer.append(eos_token_id)
        while len(buffer) - start >= block_size + lookahead:
            end = start + block_size
            yield block(buffer[start:end], buffer[end : end + lookahead])
            start += block_size
        if start > 4 * block_size:  # keep the buffer short without copying on every block
            del buffer[:start]
            start = 0
    tail = buffer[start:]
    if len(tail) >= block_size:  # only with shift_labels: a full block with no token after it
        yield block(tail[:block_size], [])
        tail = tail[block_size:]
    if tail and remainder == "pad":
        yield block(tail, [])


def pack_causal_blocks(
    documents: Iterable[Sequence[int] | np.ndarray],
    block_size: int,
    eos_token_id: int,
    *,
    remainder: Remainder = "drop",
    pad_token_id: int | None = None,
    shift_labels: bool = False,
) -> dict[str, torch.Tensor]:
    """All blocks of :func:`iter_causal_blocks`, stacked (computed in one vectorised pass).

    Returns:
        ``{"input_ids", "labels", "attention_mask"}``, each ``(N, block_size) int64``; ``N`` =
        floor(T / block_size) for ``"drop"``, ceil(T / block_size) for ``"pad"``, where ``T`` is
        the number of tokens plus one end-of-text per document.

    Raises:
        ValueError: As :func:`iter_causal_blocks`.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1 token, got {block_size}")
    if remainder not in get_args(Remainder):
        raise ValueError(f"remainder must be one of {get_args(Remainder)}, got {remainder!r}")
    pad = eos_token_id if pad_token_id is None else pad_token_id
    # The same blocks as iter_causal_blocks, built in one pass over a concatenated stream.
    pieces = [np.r_[np.asarray(d, dtype=np.int64).reshape(-1), eos_token_id] for d in documents]
    stream = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    total = len(stream)
    n = total // block_size if remainder == "drop" else -(-total // block_size)
    size = n * block_size
    valid = min(total, size)
    ids = np.full(size, pad, dtype=np.int64)
    ids[:valid] = stream[:valid]
    labels = np.full(size, IGNORE_INDEX, dtype=np.int64)
    if shift_labels:
        following = stream[1 : valid + 1]
        labels[: len(following)] = following
    else:
        labels[:valid] = stream[:valid]
    mask = np.zeros(size, dtype=np.int64)
    mask[:valid] = 1
    return {
        "input_ids": torch.from_numpy(ids.reshape(n, block_size)),
        "labels": torch.from_numpy(labels.reshape(n, block_size)),
        "attention_mask": torch.from_numpy(mask.reshape(n, block_size)),
    }
