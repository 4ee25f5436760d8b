"""VICReg's two-view generator (Bardes, Ponce, LeCun, 2022, arXiv:2105.04906)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ssl_data.transforms import RandomOp
from ssl_data.views.pipeline import IMAGENET_MEAN, IMAGENET_STD
from ssl_data.views.two_view import TwoViewAugmentation


@dataclass(frozen=True)
class VICRegView(TwoViewAugmentation):
    """VICReg's augmentation, symmetric as in the paper: blur 0.5 and solarise 0.1 in both views.

    Defaults are the paper's appendix ("Image augmentations"): random resized crop to 224 with
    area scale (0.08, 1); horizontal flip 0.5; colour jitter (brightness 0.4, contrast 0.4,
    saturation 0.2, hue 0.1) with probability 0.8; grayscale 0.2; Gaussian blur with probability
    0.5; solarisation with probability 0.1; ImageNet normalisation. The official code uses BYOL's
    asymmetric probabilities instead (``blur_p=(1.0, 0.1), solarize_p=(0.0, 0.2)``, i.e.
    :class:`ssl_data.views.BYOLView`). Field meanings: :class:`TwoViewAugmentation`.

    Reference: Bardes, Ponce and LeCun, "VICReg: Variance-Invariance-Covariance Regularization
    for Self-Supervised Learning", arXiv:2105.04906, Appendix C.
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
    blur_p: tuple[float, float] = (0.5, 0.5)
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: tuple[float, float] = (0.1, 0.1)
    policy: RandomOp | None = None
    seed: int = 0
