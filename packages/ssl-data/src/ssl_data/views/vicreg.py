"""VICReg's two-view generator (Bardes, Ponce, LeCun, 2022, arXiv:2105.04906)."""

from __future__ import annotations

from dataclasses import dataclass

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

    blur_p: tuple[float, float] = (0.5, 0.5)
    solarize_p: tuple[float, float] = (0.1, 0.1)
