"""Sentence embeddings from token states: [CLS], mean or max over the real tokens."""

from __future__ import annotations

from typing import Literal, get_args

import torch

Pooling = Literal["cls", "mean", "max", "last"]
POOLINGS: tuple[str, ...] = get_args(Pooling)


def check_pooling(pooling: str) -> Pooling:
    """Return ``pooling`` if it is one of :data:`POOLINGS`.

    Raises:
        ValueError: Unknown pooling (the message lists the known ones).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    return pooling  # type: ignore[return-value]


def pool_tokens(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool token states to one vector per sequence, ignoring padding.

    - ``"cls"``: the first real token (the ``[CLS]`` token of a BERT tokenizer; under left
      padding it is not at index 0).
    - ``"mean"``: the average over real tokens (Reimers and Gurevych, arXiv:1908.10084).
    - ``"max"``: the element-wise maximum over real tokens.
    - ``"last"``: the last real token (the one a causal decoder has read everything at).

    Args:
        hidden: ``(B, L, D)`` float token states.
        mask: ``(B, L)`` bool or integer, nonzero = real token; every row has one.
        pooling: One of :data:`POOLINGS`.

    Returns:
        ``(B, D)`` in ``hidden``'s dtype.

    Raises:
        ValueError: Unknown pooling or shapes that disagree.
    """
    check_pooling(pooling)
    if hidden.ndim != 3 or tuple(hidden.shape[:2]) != tuple(mask.shape):
        raise ValueError(
            f"hidden must be (B, L, D) with mask (B, L), got {tuple(hidden.shape)} and "
            f"{tuple(mask.shape)}"
        )
    real = mask.bool()
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if pooling == "cls":
        return hidden[rows, real.int().argmax(dim=1)]
    if pooling == "last":
        last = hidden.shape[1] - 1 - real.flip(1).int().argmax(dim=1)
        return hidden[rows, last]
    if pooling == "max":
        lowest = torch.finfo(hidden.dtype).min
        return hidden.masked_fill(~real.unsqueeze(-1), lowest).amax(dim=1)
    weights = real.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
