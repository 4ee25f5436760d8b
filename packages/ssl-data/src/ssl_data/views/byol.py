"""BYOL's asymmetric two-view generator (Grill et al., 2020, arXiv:2006.07733)."""

from __future__ import annotations

from dataclasses import dataclass

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
