"""SimCLR's two-view generator (Chen et al., 2020, arXiv:2002.05709)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.randomness import uniform
from ssl_data.transforms import (
    as_float_images,
    brightness_contrast,
    normalize,
    resized_crop_flip,
    sample_crop_boxes,
)

_ATTEMPTS = 10
_CROP_COLS = 2 * _ATTEMPTS + 2
_NUM_UNIFORMS = _CROP_COLS + 4  # crop, flip, jitter on/off, brightness, contrast


@dataclass(frozen=True)
class SimCLRView:
    """Makes two augmented views of each image: random resized crop, flip, colour jitter.

    Defaults follow SimCLR's CIFAR-10 setting (colour strength 0.5, so brightness and contrast
    factors in [0.6, 1.4], applied with probability 0.8). Saturation and hue jitter and random
    grayscale do not apply to one-channel images and are left to the full view library.
    Parameters are a function of (seed, epoch, sample index, view), so the same batch gives the
    same views in any worker or process.

    Args:
        size: Output side in pixels.
        mean: Per-channel means used for normalisation (after scaling to [0, 1]).
        std: Per-channel standard deviations.
        scale: Crop area range, as a fraction of the image.
        ratio: Crop aspect-ratio range (width / height).
        flip_p: Probability of a horizontal flip.
        jitter_p: Probability of applying brightness/contrast jitter.
        brightness: Brightness factor range is [1 - brightness, 1 + brightness].
        contrast: Contrast factor range is [1 - contrast, 1 + contrast].
        seed: Run seed.

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of Visual
    Representations", arXiv:2002.05709, Appendix A.
    """

    size: int = 28
    mean: Sequence[float] = (0.2860,)
    std: Sequence[float] = (0.3530,)
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("flip_p", "jitter_p"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        for name in ("brightness", "contrast"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {v}")
        if self.size < 1:
            raise ValueError(f"size must be >= 1 pixel, got {self.size}")

    def view(
        self, images: torch.Tensor, indices: Sequence[int] | np.ndarray, epoch: int, view: int
    ) -> torch.Tensor:
        """One augmented view of a batch.

        Args:
            images: ``(B, H, W)`` or ``(B, C, H, W)``, uint8 in [0, 255] or float in [0, 1].
            indices: ``(B,)`` dataset indices of the images (they seed the parameters).
            epoch: Epoch number.
            view: View number (0 or 1 for SimCLR).

        Returns:
            ``(B, C, size, size) float32``, normalised with ``mean``/``std``.

        Raises:
            ValueError: Shapes disagree, or ``mean``/``std`` do not match the channel count.
        """
        x = as_float_images(images)
        idx = np.asarray(indices, dtype=np.int64)
        if idx.shape != (x.shape[0],):
            raise ValueError(f"indices must be ({x.shape[0]},), got {idx.shape}")
        u = uniform(self.seed, epoch, idx, _NUM_UNIFORMS, stream=view)
        boxes = sample_crop_boxes(
            u[:, :_CROP_COLS], x.shape[2], x.shape[3], self.scale, self.ratio, _ATTEMPTS
        )
        flip = u[:, _CROP_COLS] < self.flip_p
        x = resized_crop_flip(x, boxes, flip, (self.size, self.size))
        on = u[:, _CROP_COLS + 1] < self.jitter_p
        bf = np.where(on, 1 - self.brightness + 2 * self.brightness * u[:, _CROP_COLS + 2], 1.0)
        cf = np.where(on, 1 - self.contrast + 2 * self.contrast * u[:, _CROP_COLS + 3], 1.0)
        x = brightness_contrast(x, bf, cf)
        return normalize(x, self.mean, self.std)

    def __call__(
        self, images: torch.Tensor, indices: Sequence[int] | np.ndarray, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Two views of a batch: ``(B, C, size, size) float32`` each (see :meth:`view`)."""
        return self.view(images, indices, epoch, 0), self.view(images, indices, epoch, 1)
