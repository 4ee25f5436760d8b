"""MoCo v2's two-view generator (Chen, Fan, Girshick, He, 2020, arXiv:2003.04297)."""

from __future__ import annotations

from dataclasses import dataclass

from ssl_data.views.two_view import TwoViewAugmentation


@dataclass(frozen=True)
class MoCoV2View(TwoViewAugmentation):
    """MoCo v2's augmentation: crop (scale 0.2-1), colour jitter, grayscale, blur, flip.

    Defaults are the paper's ImageNet recipe (the official ``aug_plus``): random resized crop to
    224 with area scale (0.2, 1); colour jitter (0.4, 0.4, 0.4, 0.1) with probability 0.8; grayscale
    with probability 0.2; Gaussian blur with sigma in (0.1, 2.0) with probability 0.5 in both
    views; horizontal flip; ImageNet normalisation. No solarisation. Field meanings:
    :class:`TwoViewAugmentation`.

    Reference: Chen et al., "Improved Baselines with Momentum Contrastive Learning",
    arXiv:2003.04297, Section 3 (augmentation of SimCLR, arXiv:2002.05709).
    """

    scale: tuple[float, float] = (0.2, 1.0)
    saturation: float = 0.4
    blur_p: tuple[float, float] = (0.5, 0.5)
    solarize_p: tuple[float, float] = (0.0, 0.0)
