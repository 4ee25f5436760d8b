"""Conversion of uint8 images to normalised float tensors."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def as_float_images(images: torch.Tensor) -> torch.Tensor:
    """Bring images to ``(B, C, H, W) float32`` in [0, 1].

    Args:
        images: ``(B, H, W)`` (one channel) or ``(B, C, H, W)``; uint8 in [0, 255] or float in
            [0, 1].

    Returns:
        ``(B, C, H, W) float32`` tensor in [0, 1].

    Raises:
        ValueError: The tensor is not 3-D or 4-D.
    """
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4:
        raise ValueError(f"images must be (B, H, W) or (B, C, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Subtract ``mean`` and divide by ``std`` per channel.

    Args:
        images: ``(B, C, H, W)`` float images in [0, 1].
        mean: C per-channel means (of images scaled to [0, 1]).
        std: C per-channel standard deviations (> 0).

    Returns:
        ``(B, C, H, W)`` float tensor.

    Raises:
        ValueError: ``mean``/``std`` do not have C entries, or a std is not positive.
    """
    c = images.shape[1]
    if len(mean) != c or len(std) != c or min(std) <= 0:
        raise ValueError(f"need {c} means and {c} positive stds, got mean={mean}, std={std}")
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, c, 1, 1)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, c, 1, 1)
    return (images - m) / s
