"""Multi-crop views for DINO and SwAV: 2 global crops and N small local crops."""

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
class MultiCropView:
    """Two global crops and ``num_local`` local crops of each image.

    Defaults are DINO's ImageNet recipe: global crops of 224 pixels with area scale (0.4, 1),
    local crops of 96 pixels with area scale (0.05, 0.4) (SwAV's "2x224 + 6x96"); every crop gets
    a horizontal flip (0.5), colour jitter (0.4, 0.4, 0.2, 0.1) with probability 0.8 and
    grayscale (0.2); Gaussian blur with probability 1.0 on global crop 0, 0.1 on global crop 1
    and 0.5 on local crops; solarisation (0.2) on global crop 1 only. For small images set
    ``global_size``/``local_size`` (e.g. 28 and 12 for Fashion-MNIST).

    Args:
        global_size: Side of the global crops in pixels.
        local_size: Side of the local crops in pixels.
        num_local: Number of local crops N (>= 0).
        global_scale: Area range of the global crops, as a fraction of the image.
        local_scale: Area range of the local crops.
        ratio: Aspect-ratio range of all crops.
        mean: Per-channel means for normalisation.
        std: Per-channel standard deviations.
        flip_p: Probability of a horizontal flip.
        jitter_p: Probability of colour jitter.
        brightness: Brightness jitter strength.
        contrast: Contrast jitter strength.
        saturation: Saturation jitter strength (RGB only).
        hue: Hue jitter in turns (RGB only).
        grayscale_p: Probability of grayscale (RGB only).
        global_blur_p: Blur probability of global crops 0 and 1.
        local_blur_p: Blur probability of the local crops.
        blur_sigma: Blur sigma range in pixels.
        global_solarize_p: Solarisation probability of global crops 0 and 1.
        policy: Optional sampled policy applied after each crop.
        seed: Run seed.

    Raises:
        ValueError: ``num_local`` < 0, a size below 1, or invalid augmentation parameters.

    Reference: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers"
    (DINO), arXiv:2104.14294; Caron et al., "Unsupervised Learning of Visual Features by
    Contrasting Cluster Assignments" (SwAV), arXiv:2006.09882.
    """

    global_size: int = 224
    local_size: int = 96
    num_local: int = 6
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    global_blur_p: tuple[float, float] = (1.0, 0.1)
    local_blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    global_solarize_p: tuple[float, float] = (0.0, 0.2)
    policy: RandomOp | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_local < 0:
            raise ValueError(f"num_local must be >= 0, got {self.num_local}")
        if min(self.global_size, self.local_size) < 1:
            raise ValueError(
                f"crop sizes must be >= 1 pixel, got {self.global_size}, {self.local_size}"
            )
        for v in range(self.num_views):  # builds every pipeline once: validates its parameters
            self.pipeline(v)

    @property
    def num_views(self) -> int:
        """``2 + num_local``."""
        return 2 + self.num_local

    def pipeline(self, view: int) -> ViewPipeline:
        """The operations of crop ``view``: 0 and 1 are global, the rest local."""
        is_global = view < 2
        return contrastive_pipeline(
            size=self.global_size if is_global else self.local_size,
            scale=self.global_scale if is_global else self.local_scale,
            ratio=self.ratio, flip_p=self.flip_p, jitter_p=self.jitter_p,
            brightness=self.brightness, contrast=self.contrast, saturation=self.saturation,
            hue=self.hue, grayscale_p=self.grayscale_p,
            blur_p=self.global_blur_p[view] if is_global else self.local_blur_p,
            blur_sigma=self.blur_sigma,
            solarize_p=self.global_solarize_p[view] if is_global else 0.0,
            mean=self.mean, std=self.std, policy=self.policy,
        )  # fmt: skip

    def __call__(
        self, images: torch.Tensor, indices: Sequence[int] | np.ndarray, epoch: int
    ) -> list[torch.Tensor]:
        """All crops of a batch.

        Args:
            images: ``(B, H, W)`` or ``(B, C, H, W)``, uint8 in [0, 255] or float in [0, 1].
            indices: ``(B,)`` dataset indices (they seed the parameters).
            epoch: Epoch number.

        Returns:
            ``2 + num_local`` tensors: two ``(B, C, global_size, global_size) float32`` global
            crops, then ``num_local`` ``(B, C, local_size, local_size) float32`` local crops.

        Raises:
            ValueError: Shapes disagree, or ``mean``/``std`` do not match the channel count.
        """
        x, idx = prepare_images(images, indices)
        return [self.pipeline(v)(x, idx, epoch, self.seed, v) for v in range(self.num_views)]
