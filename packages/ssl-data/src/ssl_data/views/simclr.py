"""SimCLR's two-view generator (Chen et al., 2020, arXiv:2002.05709)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ssl_data.views.two_view import TwoViewAugmentation


@dataclass(frozen=True)
class SimCLRView(TwoViewAugmentation):
    """Two views per image: random resized crop, flip, colour jitter, random grayscale.

    Defaults follow SimCLR's CIFAR-10 setting (colour strength 0.5: brightness, contrast and
    saturation 0.4, hue 0.1, applied with probability 0.8 in a random order; grayscale with
    probability 0.2; no blur) at Fashion-MNIST's size and statistics. Saturation, hue and
    grayscale are no-ops on one-channel images. For SimCLR's ImageNet setting use ``size=224``,
    colour strength 1 (``brightness=contrast=saturation=0.8, hue=0.2``), ``blur_p=(0.5, 0.5)``
    and ImageNet's mean/std. Field meanings: :class:`TwoViewAugmentation`.

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of Visual
    Representations", arXiv:2002.05709, Appendix A.
    """

    size: int = 28
    mean: Sequence[float] = (0.2860,)
    std: Sequence[float] = (0.3530,)
    saturation: float = 0.4
    blur_p: tuple[float, float] = (0.0, 0.0)
    solarize_p: tuple[float, float] = (0.0, 0.0)
