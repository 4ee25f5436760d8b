"""Barlow Twins' two-view generator (Zbontar et al., 2021, arXiv:2103.03230)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ssl_data.transforms import RandomOp
from ssl_data.views.pipeline import IMAGENET_MEAN, IMAGENET_STD
from ssl_data.views.two_view import TwoViewAugmentation


@dataclass(frozen=True)
class BarlowTwinsView(TwoViewAugmentation):
    """Barlow Twins' augmentation: BYOL's asymmetric recipe (blur 1.0 / 0.1, solarise 0 / 0.2).

    Defaults are the paper's augmentation table (Appendix, "Image augmentations", which follows
    BYOL): random resized crop to 224 with area scale (0.08, 1); horizontal flip 0.5; colour
    jitter (0.4, 0.4, 0.2, 0.1) with probability 0.8; grayscale 0.2; Gaussian blur with
    probability 1.0 / 0.1; solarisation with probability 0 / 0.2; ImageNet normalisation. Field
    meanings: :class:`TwoViewAugmentation`.

    Reference: Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy
    Reduction", arXiv:2103.03230, Appendix (image augmentation parameters).
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
