"""BYOL's asymmetric two-view generator (Grill et al., 2020, arXiv:2006.07733)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ssl_data.transforms import RandomOp
from ssl_data.views.pipeline import IMAGENET_MEAN, IMAGENET_STD
from ssl_data.views.two_view import TwoViewAugmentation


@dataclass(frozen=True)
class BYOLView(TwoViewAugmentation):
    """BYOL's augmentation: the two views differ in blur (p = 1.0 / 0.1) and solarisation (0 / 0.2).

    Defaults are the paper's Table 6: random resized crop to 224 with area scale (0.08, 1);
    horizontal flip with probability 0.5; colour jitter (brightness 0.4, contrast 0.4,
    saturation 0.2, hue 0.1) with probability 0.8 in a random order; grayscale with probability
    0.2; Gaussian blur (sigma in (0.1, 2.0), kernel 23 pixels at 224, i.e. 10%) with
    probability 1.0 in view 0 and 0.1 in view 1; solarisation (threshold 0.5) with probability 0
    in view 0 and 0.2 in view 1; ImageNet normalisation. Field meanings:
    :class:`TwoViewAugmentation`.

    Reference: Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised
    Learning", arXiv:2006.07733, Appendix B, Table 6.
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
