"""Horizontal and vertical flips with a per-sample coin."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.transforms.compose import check_probability, check_uniforms
from ssl_data.transforms.normalize import as_float_images


def flip(images: torch.Tensor, horizontal: np.ndarray, vertical: np.ndarray) -> torch.Tensor:
    """Mirror each image left-right where ``horizontal`` and top-bottom where ``vertical``.

    Args:
        images: ``(B, C, H, W)`` images (any dtype).
        horizontal: ``(B,)`` bool.
        vertical: ``(B,)`` bool.

    Returns:
        ``(B, C, H, W)`` tensor of the input's dtype.

    Raises:
        ValueError: A mask does not have B entries.
    """
    b = images.shape[0]
    if horizontal.shape != (b,) or vertical.shape != (b,):
        raise ValueError(f"flip masks must be ({b},), got {horizontal.shape}, {vertical.shape}")
    out = images
    for mask, dim in ((horizontal, -1), (vertical, -2)):
        if mask.any():
            m = torch.from_numpy(np.asarray(mask, dtype=bool)).to(images.device).view(b, 1, 1, 1)
            out = torch.where(m, out.flip(dim), out)
    return out


@dataclass(frozen=True)
class RandomFlip:
    """Random horizontal and vertical flips (two uniforms per sample: horizontal, vertical).

    Args:
        horizontal_p: Probability of a left-right mirror.
        vertical_p: Probability of a top-bottom mirror.
    """

    horizontal_p: float = 0.5
    vertical_p: float = 0.0

    def __post_init__(self) -> None:
        check_probability("horizontal_p", self.horizontal_p)
        check_probability("vertical_p", self.vertical_p)

    @property
    def num_uniforms(self) -> int:
        """Two: horizontal coin, vertical coin."""
        return 2

    def __call__(self, images: torch.Tensor, u: np.ndarray) -> torch.Tensor:
        """Flip ``(B, C, H, W)`` images; returns float32 in [0, 1]."""
        x = as_float_images(images)
        check_uniforms(u, x.shape[0], 2, "RandomFlip")
        return flip(x, u[:, 0] < self.horizontal_p, u[:, 1] < self.vertical_p)
