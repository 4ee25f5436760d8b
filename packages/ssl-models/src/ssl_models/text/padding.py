"""Padded token batches: validation, position ids under left or right padding, re-alignment.

A text batch is ``input_ids (B, L) int64`` plus ``attention_mask (B, L)`` (1 = real token,
0 = padding), padded on the right (BERT) or on the left (decoder generation), as ssl-data's
``TextCollator`` makes it. Real tokens of a row are contiguous.
"""

from __future__ import annotations

import torch


def check_token_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Validate a token batch and return its attention mask as ``(B, L) bool``.

    Args:
        input_ids: ``(B, L)`` integer token ids.
        attention_mask: ``(B, L)`` (any integer/bool dtype; nonzero = real token), or None for
            "every position is real".

    Returns:
        ``(B, L) bool`` mask on ``input_ids``' device.

    Raises:
        ValueError: ``input_ids`` is not 2-D integer, the mask's shape differs, or a row has no
            real token.
    """
    if input_ids.ndim != 2 or input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise ValueError(
            f"input_ids must be (B, L) integer token ids, got {tuple(input_ids.shape)} "
            f"{input_ids.dtype}"
        )
    if attention_mask is None:
        return torch.ones_like(input_ids, dtype=torch.bool)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask must have input_ids' shape {tuple(input_ids.shape)}, got "
            f"{tuple(attention_mask.shape)}"
        )
    mask = attention_mask.bool()
    empty = ~mask.any(dim=1)
    if bool(empty.any()):
        raise ValueError(
            f"every row needs at least one real token; rows {empty.nonzero().flatten().tolist()} "
            "have none"
        )
    return mask


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position of every token among its row's real tokens, 0 at padding.

    With left padding, absolute positions ``arange(L)`` would give a sentence different position
    embeddings depending on how much padding precedes it; counting real tokens makes a sentence's
    positions (and so its embedding) independent of the padding side and amount.

    Args:
        mask: ``(B, L) bool``, True = real token.

    Returns:
        ``(B, L) int64``: ``0, 1, ..., n - 1`` over the real tokens, 0 on padding.
    """
    positions = mask.long().cumsum(dim=1) - 1
    return positions.clamp(min=0).masked_fill(~mask, 0)


def packing_order(mask: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """A per-row permutation that moves the real tokens to the front (optionally reversed).

    ``x.gather(1, order)`` turns any padding side into right padding, which is what
    ``torch.nn.utils.rnn.pack_padded_sequence`` expects; with ``reverse=True`` the real tokens
    also come last-to-first (the backward language model's reading order).
    ``order.argsort(dim=1)`` maps results back to the original positions.

    Args:
        mask: ``(B, L) bool``, True = real token (contiguous per row).
        reverse: Reverse the real tokens.

    Returns:
        ``(B, L) int64`` source positions.
    """
    length = mask.shape[1]
    pos = torch.arange(length, device=mask.device).expand_as(mask)
    key = pos.float() if not reverse else (length - 1 - pos).float()
    # Real tokens sort first (by position, or by reversed position), padding after them.
    key = torch.where(mask, key, key + 2 * length)
    return key.argsort(dim=1, stable=True)
