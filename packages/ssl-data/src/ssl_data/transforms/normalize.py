"""Conversion of uint8 images to normalised float tensors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
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

    For RGBA images, three statistics normalise the colour channels and pass alpha through
    untouched; four statistics normalise all channels.

    Args:
        images: ``(B, C, H, W)`` float images in [0, 1].
        mean: C per-channel means (of images scaled to [0, 1]), or 3 when C is 4.
        std: C per-channel standard deviations (> 0), or 3 when C is 4.

    Returns:
        ``(B, C, H, W)`` float tensor.

    Raises:
        ValueError: ``mean``/``std`` do not have C entries, or a std is not positive.
    """
    c = images.shape[1]
    n = len(mean)
    if n == 3 and c == 4 and len(std) == 3 and min(std) > 0:
        return torch.cat([normalize(images[:, :3], mean, std), images[:, 3:]], dim=1)
    if n != c or len(std) != c or min(std) <= 0:
        raise ValueError(f"need {c} means and {c} positive stds, got mean={mean}, std={std}")
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, c, 1, 1)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, c, 1, 1)
    return (images - m).div_(s)


@dataclass(frozen=True)
class Normalize:
    """Per-channel normalisation as a (non-random) operation of a :class:`Compose`.

    Args:
        mean: Per-channel means of images scaled to [0, 1].
        std: Per-channel standard deviations (> 0).
    """

    mean: Sequence[float]
    std: Sequence[float]

    @property
    def num_uniforms(self) -> int:
        """Reads no uniforms."""
        return 0

    def __call__(self, images: torch.Tensor, u: np.ndarray | None = None) -> torch.Tensor:
        """``(B, C, H, W)`` images (uint8 or float in [0, 1]) -> normalised float (see
        :func:`normalize`)."""
        return normalize(as_float_images(images), self.mean, self.std)
