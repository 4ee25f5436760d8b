"""Solarisation: invert the pixels at or above a threshold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.transforms.channels import merge_alpha, split_alpha
from ssl_data.transforms.compose import apply_where, check_probability, check_uniforms
from ssl_data.transforms.normalize import as_float_images


def solarize(images: torch.Tensor, threshold: float | np.ndarray = 0.5) -> torch.Tensor:
    """``x -> 1 - x`` where ``x >= threshold``, else ``x`` (colour channels; alpha untouched).

    Args:
        images: ``(B, C, H, W)`` float in [0, 1], C in {1, 3, 4}.
        threshold: One threshold in [0, 1], or ``(B,)`` per image.

    Returns:
        ``(B, C, H, W)`` float in [0, 1].

    Raises:
        ValueError: A per-image threshold array of the wrong length.
    """
    colour, alpha = split_alpha(images)
    t = torch.as_tensor(np.asarray(threshold, dtype=np.float64)).to(images.device, images.dtype)
    if t.ndim == 1:
        if t.shape != (images.shape[0],):
            raise ValueError(f"threshold must be a number or ({images.shape[0]},), got {t.shape}")
        t = t.view(-1, 1, 1, 1)
    return merge_alpha(torch.where(colour >= t, 1.0 - colour, colour), alpha)


@dataclass(frozen=True)
class RandomSolarize:
    """Solarise a sample with probability ``p`` (one uniform per sample).

    Args:
        p: Probability of solarising.
        threshold: Gray level in [0, 1] from which pixels are inverted (BYOL: 0.5).

    Reference: Grill et al., "Bootstrap your own latent", arXiv:2006.07733, Table 6.
    """

    p: float = 0.2
    threshold: float = 0.5

    def __post_init__(self) -> None:
        check_probability("p", self.p)
        check_probability("threshold", self.threshold)

    @property
    def num_uniforms(self) -> int:
        """One: the coin."""
        return 1

    def __call__(self, images: torch.Tensor, u: np.ndarray) -> torch.Tensor:
        """Maybe solarise ``(B, C, H, W)`` images; returns float32 in [0, 1]."""
        x = as_float_images(images)
        check_uniforms(u, x.shape[0], 1, "RandomSolarize")
        return apply_where(x, u[:, 0] < self.p, lambda s, rows: solarize(s, self.threshold))
