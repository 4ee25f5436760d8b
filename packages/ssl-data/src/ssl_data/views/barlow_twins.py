"""Barlow Twins' two-view generator (Zbontar et al., 2021, arXiv:2103.03230)."""

from __future__ import annotations

from dataclasses import dataclass

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
