"""The two-view augmentation shared by SimCLR, MoCo v2, BYOL, VICReg and Barlow Twins.

Each method is a subclass that only changes defaults (its paper's table); the composition is
:func:`ssl_data.views.pipeline.contrastive_pipeline`, with per-view blur and solarisation
probabilities so that asymmetric recipes (BYOL) and symmetric ones (SimCLR) share one class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.transforms import RandomOp
from ssl_data.views.pipeline import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ViewPipeline,
    contrastive_pipeline,
    prepare_images,
)


@dataclass(frozen=True)
class TwoViewAugmentation:
    """Two augmented views per image: crop + flip, colour jitter, grayscale, blur, solarise.

    Parameters are a function of (seed, epoch, sample index, view), so the same sample gets the
    same views in any batch, worker or process. The defaults are BYOL's (arXiv:2006.07733,
    Table 6); the subclasses name each method's own.

    Args:
        size: Output side in pixels.
        mean: Per-channel means used for normalisation (after scaling to [0, 1]).
        std: Per-channel standard deviations.
        scale: Crop area range, as a fraction of the image.
        ratio: Crop aspect-ratio range (width / height).
        flip_p: Probability of a horizontal flip.
        jitter_p: Probability of applying colour jitter.
        brightness: Brightness factor range is [1 - brightness, 1 + brightness].
        contrast: Contrast factor range is [1 - contrast, 1 + contrast].
        saturation: Saturation factor range is [1 - saturation, 1 + saturation] (RGB only).
        hue: Hue shift range is [-hue, hue] turns (RGB only).
        grayscale_p: Probability of converting to grayscale (RGB only).
        blur_p: Probability of Gaussian blur in view 0 and view 1.
        blur_sigma: Blur standard deviation range in pixels (kernel: 10% of the image side).
        solarize_p: Probability of solarisation in view 0 and view 1.
        policy: Optional sampled policy (RandAugment, TrivialAugment) applied after the crop.
        seed: Run seed.

    Raises:
        ValueError: A probability outside [0, 1], a jitter strength outside its range, or a size
            below 1.
    """

    size: int = 224
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: tuple[float, float] = (1.0, 0.1)
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: tuple[float, float] = (0.0, 0.2)
    policy: RandomOp | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        probabilities = {"flip_p": self.flip_p, "jitter_p": self.jitter_p,
                         "grayscale_p": self.grayscale_p}  # fmt: skip
        for v in (0, 1):
            probabilities[f"blur_p[{v}]"] = self.blur_p[v]
            probabilities[f"solarize_p[{v}]"] = self.solarize_p[v]
        for name, p in probabilities.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        for name in ("brightness", "contrast", "saturation"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {v}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5] turns, got {self.hue}")
        if self.size < 1:
            raise ValueError(f"size must be >= 1 pixel, got {self.size}")

    def pipeline(self, view: int) -> ViewPipeline:
        """The operations of view ``view`` (0 or 1)."""
        return contrastive_pipeline(
            size=self.size, scale=self.scale, ratio=self.ratio, flip_p=self.flip_p,
            jitter_p=self.jitter_p, brightness=self.brightness, contrast=self.contrast,
            saturation=self.saturation, hue=self.hue, grayscale_p=self.grayscale_p,
            blur_p=self.blur_p[view], blur_sigma=self.blur_sigma,
            solarize_p=self.solarize_p[view], mean=self.mean, std=self.std, policy=self.policy,
        )  # fmt: skip

    def view(
        self, images: torch.Tensor, indices: Sequence[int] | np.ndarray, epoch: int, view: int
    ) -> torch.Tensor:
        """One augmented view of a batch.

        Args:
            images: ``(B, H, W)`` or ``(B, C, H, W)``, uint8 in [0, 255] or float in [0, 1];
                C in {1, 3, 4}.
            indices: ``(B,)`` dataset indices of the images (they seed the parameters).
            epoch: Epoch number.
            view: View number (0 or 1).

        Returns:
            ``(B, C, size, size) float32``, normalised with ``mean``/``std``.

        Raises:
            ValueError: Shapes disagree, or ``mean``/``std`` do not match the channel count.
        """
        x, idx = prepare_images(images, indices, as_float=False)
        return self.pipeline(view)(x, idx, epoch, self.seed, view)

    def __call__(
        self, images: torch.Tensor, indices: Sequence[int] | np.ndarray, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Two views of a batch: ``(B, C, size, size) float32`` each (see :meth:`view`)."""
        return self.view(images, indices, epoch, 0), self.view(images, indices, epoch, 1)
