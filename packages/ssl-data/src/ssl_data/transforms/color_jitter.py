"""Colour jitter: brightness, contrast, saturation and hue, in a random order per sample.

Semantics follow torchvision's ``ColorJitter`` (the augmentation SimCLR, MoCo, BYOL and their
successors use): brightness scales the colour, contrast blends with the image's mean gray level,
saturation blends with the gray image, hue rotates the HSV hue; the four run in a random order
drawn per sample. Gray images have no saturation or hue (those are no-ops); RGBA alpha is never
changed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.transforms.channels import luma, merge_alpha, split_alpha
from ssl_data.transforms.compose import (
    apply_by_group,
    apply_where,
    check_probability,
    check_uniforms,
)
from ssl_data.transforms.normalize import as_float_images

ORDERS = tuple(itertools.permutations(range(4)))  # 24 orders of (brightness, contrast, sat, hue)


def _factors(factor: np.ndarray, images: torch.Tensor) -> torch.Tensor:
    """Per-image factors as a ``(B,)`` tensor on the images' device and dtype."""
    b = images.shape[0]
    f = torch.as_tensor(np.asarray(factor, dtype=np.float64))
    if f.shape != (b,):
        raise ValueError(f"need one factor per image ({b},), got {tuple(f.shape)}")
    return f.to(device=images.device, dtype=images.dtype)


def adjust_brightness(images: torch.Tensor, factor: np.ndarray) -> torch.Tensor:
    """Multiply the colour channels by ``factor`` and clip to [0, 1] (alpha untouched).

    Args:
        images: ``(B, C, H, W)`` float in [0, 1], C in {1, 3, 4}.
        factor: ``(B,)`` factors >= 0 (1 = unchanged).

    Returns:
        ``(B, C, H, W)`` float in [0, 1].

    Raises:
        ValueError: Bad shapes.
    """
    colour, alpha = split_alpha(images)
    f = _factors(factor, images).view(-1, 1, 1, 1)
    return merge_alpha((colour * f).clamp(0.0, 1.0), alpha)


def adjust_contrast(images: torch.Tensor, factor: np.ndarray) -> torch.Tensor:
    """Blend each image with its mean gray level: ``f * x + (1 - f) * mean(luma(x))``, clipped.

    Args:
        images: ``(B, C, H, W)`` float in [0, 1], C in {1, 3, 4}.
        factor: ``(B,)`` factors >= 0 (1 = unchanged, 0 = flat mean gray).

    Returns:
        ``(B, C, H, W)`` float in [0, 1].

    Raises:
        ValueError: Bad shapes.
    """
    colour, alpha = split_alpha(images)
    f = _factors(factor, images).view(-1, 1, 1, 1)
    mean = luma(colour).mean(dim=(1, 2, 3), keepdim=True)
    return merge_alpha((f * colour + (1 - f) * mean).clamp(0.0, 1.0), alpha)


def adjust_saturation(images: torch.Tensor, factor: np.ndarray) -> torch.Tensor:
    """Blend RGB with its luma: ``f * x + (1 - f) * luma(x)``, clipped; gray images unchanged.

    Kernel: ``kornia.enhance.adjust_saturation_with_gray_subtraction`` (torchvision/PIL rule).

    Args:
        images: ``(B, C, H, W)`` float in [0, 1], C in {1, 3, 4}.
        factor: ``(B,)`` factors >= 0 (0 = gray, 1 = unchanged).

    Returns:
        ``(B, C, H, W)`` float in [0, 1].

    Raises:
        ValueError: Bad shapes.
    """
    colour, alpha = split_alpha(images)
    f = _factors(factor, images)
    if colour.shape[1] == 1:
        return images
    import kornia  # imported on first use: it adds ~2 s to `import ssl_data`

    out = kornia.enhance.adjust_saturation_with_gray_subtraction(colour, f)
    return merge_alpha(out, alpha)


def adjust_hue(images: torch.Tensor, factor: np.ndarray) -> torch.Tensor:
    """Rotate the HSV hue by ``factor`` turns (in [-0.5, 0.5]); gray images unchanged.

    Kernel: ``kornia.enhance.adjust_hue`` (the angle is ``2 * pi * factor`` radians).

    Args:
        images: ``(B, C, H, W)`` float in [0, 1], C in {1, 3, 4}.
        factor: ``(B,)`` hue shifts in turns; +1/3 turns pure red into pure green.

    Returns:
        ``(B, C, H, W)`` float in [0, 1].

    Raises:
        ValueError: Bad shapes.
    """
    colour, alpha = split_alpha(images)
    f = _factors(factor, images)
    if colour.shape[1] == 1:
        return images
    import kornia  # imported on first use: it adds ~2 s to `import ssl_data`

    out = kornia.enhance.adjust_hue(colour, f * (2 * math.pi)).clamp(0.0, 1.0)
    return merge_alpha(out, alpha)


_ADJUST = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def color_jitter(images: torch.Tensor, factors: np.ndarray, order: np.ndarray) -> torch.Tensor:
    """Apply brightness, contrast, saturation and hue with per-sample factors and order.

    Args:
        images: ``(B, C, H, W)`` float in [0, 1], C in {1, 3, 4}.
        factors: ``(B, 4)`` brightness, contrast, saturation factors and hue shift (turns).
        order: ``(B, 4)`` int, each row a permutation of ``0..3`` (0 brightness, 1 contrast,
            2 saturation, 3 hue): the operations in the order they run.

    Returns:
        ``(B, C, H, W)`` float in [0, 1].

    Raises:
        ValueError: Bad shapes.
    """
    b = images.shape[0]
    if factors.shape != (b, 4) or order.shape != (b, 4):
        raise ValueError(f"factors and order must be ({b}, 4), got {factors.shape}, {order.shape}")
    gray = split_alpha(images)[0].shape[1] == 1

    def adjust(op: int, subset: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        if gray and op >= 2:  # saturation and hue do not exist for gray images
            return subset
        return _ADJUST[op](subset, factors[rows, op])

    x = images
    for step in range(4):
        x = apply_by_group(x, order[:, step], adjust)
    return x


def brightness_contrast(
    images: torch.Tensor, brightness: np.ndarray, contrast: np.ndarray
) -> torch.Tensor:
    """Scale brightness, then contrast around each image's mean gray level, then clip to [0, 1].

    Matches torchvision's ``adjust_brightness`` followed by ``adjust_contrast`` for a factor per
    image (a factor of 1 leaves the image unchanged).

    Args:
        images: ``(B, C, H, W)`` float images in [0, 1]; C is 1 (gray) or 3 (RGB).
        brightness: ``(B,)`` multiplicative brightness factors (>= 0).
        contrast: ``(B,)`` contrast factors (>= 0).

    Returns:
        ``(B, C, H, W)`` tensor in [0, 1].

    Raises:
        ValueError: C is not 1 or 3, or a factor array has the wrong length.
    """
    b, c = images.shape[0], images.shape[1]
    if c not in (1, 3) or brightness.shape != (b,) or contrast.shape != (b,):
        raise ValueError(
            f"images (B, 1|3, H, W) and factors (B,) expected, got {tuple(images.shape)}, "
            f"{brightness.shape}, {contrast.shape}"
        )
    return adjust_contrast(adjust_brightness(images, brightness), contrast)


@dataclass(frozen=True)
class ColorJitter:
    """Random colour jitter, applied with probability ``p``, in a random order per sample.

    Reads 6 uniforms per sample: apply coin, brightness, contrast, saturation, hue, order (one of
    the 24 orders). Factors are uniform in ``[max(0, 1 - v), 1 + v]`` for brightness, contrast and
    saturation, and the hue shift in ``[-hue, hue]`` turns, as torchvision's ``ColorJitter``.

    Args:
        brightness: Brightness jitter strength (>= 0).
        contrast: Contrast jitter strength (>= 0).
        saturation: Saturation jitter strength (>= 0); no-op on gray images.
        hue: Hue jitter in turns, in [0, 0.5]; no-op on gray images.
        p: Probability of jittering a sample at all.

    Raises:
        ValueError: A negative strength, ``hue`` outside [0, 0.5] or ``p`` outside [0, 1].

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of Visual
    Representations", arXiv:2002.05709, Appendix A.
    """

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    p: float = 0.8

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5] turns, got {self.hue}")
        check_probability("p", self.p)

    @property
    def num_uniforms(self) -> int:
        """Six: apply coin, four factors, order."""
        return 6

    def parameters(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(apply (B,) bool, factors (B, 4) float64, order (B, 4) int64)`` read from ``u``."""
        apply = u[:, 0] < self.p
        factors = np.empty((len(u), 4))
        for j, v in enumerate((self.brightness, self.contrast, self.saturation)):
            lo = max(0.0, 1.0 - v)
            factors[:, j] = lo + (1.0 + v - lo) * u[:, 1 + j]
        factors[:, 3] = -self.hue + 2 * self.hue * u[:, 4]
        k = np.minimum((u[:, 5] * len(ORDERS)).astype(np.int64), len(ORDERS) - 1)
        order = np.asarray(ORDERS, dtype=np.int64)[k]
        return apply, factors, order

    def __call__(self, images: torch.Tensor, u: np.ndarray) -> torch.Tensor:
        """Jitter ``(B, C, H, W)`` images; returns float32 in [0, 1]."""
        x = as_float_images(images)
        check_uniforms(u, x.shape[0], 6, "ColorJitter")
        apply, factors, order = self.parameters(u)
        return apply_where(x, apply, lambda s, rows: color_jitter(s, factors[rows], order[rows]))
