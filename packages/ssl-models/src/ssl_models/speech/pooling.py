"""Utterance embeddings: frame features pooled over each clip's real (unpadded) frames."""

from __future__ import annotations

import torch


def mean_pool_frames(frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Mean of each clip's real frames; padded frames get no weight, so a clip's embedding is the
    same alone and inside a padded batch.

    Args:
        frames: ``(B, F, D)`` float frame features.
        frame_mask: ``(B, F) bool``, True on real frames; every clip needs at least one.

    Returns:
        ``(B, D)``, the dtype of ``frames``.

    Raises:
        ValueError: Shapes disagree, or a clip has no real frame.
    """
    if frames.ndim != 3 or frame_mask.shape != frames.shape[:2]:
        raise ValueError(
            f"frames must be (B, F, D) and frame_mask (B, F), got {tuple(frames.shape)} and "
            f"{tuple(frame_mask.shape)}"
        )
    counts = frame_mask.sum(dim=1)
    if (counts == 0).any():
        raise ValueError(f"clip {int((counts == 0).nonzero()[0, 0])} has no real frame")
    # masked_fill, not a product with the mask: a non-finite padded frame must not leak in.
    total = frames.masked_fill(~frame_mask[..., None], 0.0).sum(dim=1)
    return total / counts[:, None].to(frames.dtype)


__all__ = ["mean_pool_frames"]
