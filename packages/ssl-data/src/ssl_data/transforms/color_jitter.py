"""Colour jitter: brightness, contrast, saturation and hue, in a random order per sample.

Semantics follow torchvision's ``ColorJitter`` (the augmentation SimCLR, MoCo, BYOL and their
successors use): brightness scales the colour, contrast blends with the image's mean gray level,
saturation blends with the gray image, hue rotates the HSV hue; the four run in a random order
drawn per sample. Gray images have no saturation or hue (those are no-ops); RGBA alpha is never
changed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.transforms.channels import luma, merge_alpha, split_alpha
from ssl_data.transforms.compose import check_probability, check_uniforms
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

    The torchvision/PIL rule (also ``kornia.enhance.adjust_saturation_with_gray_subtraction``),
    written as one fused multiply-add per pixel.

    Args:
        images: ``(B, C, H, W)`` float in [0, 1], C in {1, 3, 4}.
        factor: ``(B,)`` factors >= 0 (0 = gray, 1 = unchanged).

    Returns:
        ``(B, C, H, W)`` float in [0, 1].

    Raises:
        ValueError: Bad shapes.
    """
    colour, alpha = split_alpha(images)
    f = _factors(factor, images).view(-1, 1, 1, 1)
    if colour.shape[1] == 1:
        return images
    out = torch.addcmul((1 - f) * luma(colour), colour, f).clamp_(0.0, 1.0)
    return merge_alpha(out, alpha)


def adjust_hue(images: torch.Tensor, factor: np.ndarray) -> torch.Tensor:
    """Rotate the HSV hue by ``factor`` turns (in [-0.5, 0.5]); gray images unchanged.

    Saturation and value are kept exactly: the output is the HSV-to-RGB map of the shifted hue
    (see :func:`shift_hue`), as torchvision's and kornia's ``adjust_hue``.

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
    return merge_alpha(shift_hue(colour, f), alpha)


# Offsets n of the HSV-to-RGB formula f(n) = V - C * clip(min(k, 4 - k), 0, 1),
# k = (n + 6 H) mod 6, for R, G and B.
_HSV_OFFSETS = (5.0, 3.0, 1.0)


def _is_max(channel: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """1.0 where ``channel == v`` (its pixel's maximum), 0.0 where it is below by more than the
    dtype's smallest normal number.

    Plain arithmetic: boolean tensors, ``where`` and ``remainder`` run unvectorised on CPU
    (about 10x slower than a multiply). In the narrow band between, the weight is fractional,
    which blends two hue formulas that agree there (hue is continuous at ties).
    """
    big = 1.0 / torch.finfo(channel.dtype).tiny
    return (channel - v).mul_(big).add_(1.0).clamp_(0.0, 1.0)


def shift_hue(rgb: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Add ``shift`` turns to the HSV hue of RGB images, without materialising HSV.

    With V = max(R, G, B) and chroma C = V - min(R, G, B), the hue in sextants is
    ``(G - B) / C`` where R is the maximum, ``2 + (B - R) / C`` where G is (and R is not),
    ``4 + (R - G) / C`` otherwise (``colorsys``'s rule; C = 0 leaves the pixel gray). Output
    channel n is ``V - C * clip(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 H') mod 6``, the closed
    form of the HSV-to-RGB map; V and C, hence HSV value and saturation, are kept.

    Args:
        rgb: ``(B, 3, H, W)`` float (any floating dtype) in [0, 1].
        shift: ``(B,)`` hue shifts in turns, same dtype and device.

    Returns:
        ``(B, 3, H, W)`` float in [0, 1].

    Reference: Smith, "Color gamut transform pairs", SIGGRAPH 1978 (the HSV model).
    """
    r, g, b = rgb.unbind(1)
    v = torch.maximum(torch.maximum(r, g), b)
    chroma = v - torch.minimum(torch.minimum(r, g), b)
    # C times the hue in sextants; lerp with a 0/1 weight selects exactly, R's rule last so
    # that it wins ties, as in colorsys.
    hue = torch.lerp(
        (r - g).add_(chroma, alpha=4.0), (b - r).add_(chroma, alpha=2.0), _is_max(g, v)
    )
    hue = torch.lerp(hue, g - b, _is_max(r, v))
    # Gray pixels (C = 0) get any finite hue: their output is V - 0 * ramp = V.
    inv_chroma = chroma.clamp_min(torch.finfo(rgb.dtype).tiny).reciprocal_()
    hue.mul_(inv_chroma).add_(6.0 * shift.view(-1, 1, 1))
    offsets = torch.tensor(_HSV_OFFSETS, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    k = hue.unsqueeze(1) + offsets
    k.sub_(torch.floor(k / 6.0).mul_(6.0))  # k mod 6, without the slow remainder kernel
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return ramp.mul_(chroma.unsqueeze(1)).neg_().add_(v.unsqueeze(1)).clamp_(0.0, 1.0)


# ITU-R 601-2 luma weights of R, G and B (as :func:`ssl_data.transforms.channels.luma`).
_LUMA = (0.299, 0.587, 0.114)


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
    return jitter_rows(images, factors, order, np.ones(b, dtype=bool))


def jitter_rows(
    images: torch.Tensor, factors: np.ndarray, order: np.ndarray, active: np.ndarray
) -> torch.Tensor:
    """:func:`color_jitter` on the samples where ``active`` is true; the others pass unchanged.

    Runs as four steps over the whole batch, whatever the mix of orders: at step ``s`` every
    sample whose ``s``-th operation is brightness, contrast or saturation goes through one fused
    ``clip(f * x + w * g, 0, 1)`` (``g`` its mean gray level or luma, ``w = 1 - f``; the others
    get ``f = 1, w = 0``, which is exactly the identity), and only the samples whose ``s``-th
    operation is hue are gathered for :func:`shift_hue`.

    Args:
        images: ``(B, C, H, W)`` float in [0, 1], C in {1, 3, 4}.
        factors: ``(B, 4)`` as in :func:`color_jitter`.
        order: ``(B, 4)`` as in :func:`color_jitter`.
        active: ``(B,)`` bool, the samples to jitter.

    Returns:
        ``(B, C, H, W)`` float in [0, 1]; ``images`` itself when no sample is jittered.

    Raises:
        ValueError: C is not 1, 3 or 4.
    """
    colour, alpha = split_alpha(images)
    rgb = colour.shape[1] == 3
    if len(active) == 1:  # the per-sample path: the four operations with plain float factors
        if not active[0]:
            return images
        x = colour
        for op in order[0]:
            if rgb or op < 2:  # saturation and hue do not exist for gray images
                x = _adjust_one(x, int(op), float(factors[0, op]))
        return merge_alpha(x, alpha)
    x, owned = colour, False  # owned: x was allocated here, so it may be changed in place
    for step in range(4):
        op = np.where(active, order[:, step], -1)
        if not rgb:  # saturation and hue do not exist for gray images
            op = np.where(op >= 2, -1, op)
        if ((op >= 0) & (op <= 2)).any():
            x, owned = _blend_step(x, op, factors), True
        rows = np.flatnonzero(op == 3)
        if rows.size == 0:
            continue
        shift = torch.from_numpy(factors[rows, 3]).to(device=x.device, dtype=x.dtype)
        if rows.size == len(op):
            x, owned = shift_hue(x, shift), True
            continue
        if not owned:
            x, owned = x.clone(), True
        index = torch.from_numpy(rows).to(x.device)
        x.index_copy_(0, index, shift_hue(x.index_select(0, index), shift))
    return images if x is colour else merge_alpha(x, alpha)


def _adjust_one(x: torch.Tensor, op: int, factor: float) -> torch.Tensor:
    """Operation ``op`` (0 brightness, 1 contrast, 2 saturation, 3 hue) on a ``(1, C, H, W)``
    image, with the arithmetic of :func:`_blend_step` and :func:`shift_hue`."""
    if op == 3:
        return shift_hue(x, torch.full((1,), factor, dtype=x.dtype, device=x.device))
    y = x * factor
    if op == 1:
        if x.shape[1] == 3:
            weights = torch.tensor(_LUMA, dtype=x.dtype, device=x.device)
            mean = x.mean(dim=(2, 3)) @ weights
        else:
            mean = x.mean(dim=(1, 2, 3))
        y.add_(mean.view(1, 1, 1, 1) * (1.0 - factor))
    elif op == 2:
        y.add_(luma(x).mul_(1.0 - factor))
    return y.clamp_(0.0, 1.0)


def _blend_step(x: torch.Tensor, op: np.ndarray, factors: np.ndarray) -> torch.Tensor:
    """One step of :func:`jitter_rows` for the brightness (0), contrast (1), saturation (2) rows.

    Rows with another ``op`` (hue 3, none -1) are multiplied by 1 plus 0, i.e. left exact.
    """
    b = x.shape[0]
    blend = (op >= 0) & (op <= 2)
    f = np.where(blend, factors[np.arange(b), np.clip(op, 0, 2)], 1.0)

    def per_image(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(device=x.device, dtype=x.dtype).view(b, 1, 1, 1)

    bias: torch.Tensor | None = None
    if (op == 1).any():  # contrast: blend with the image's mean gray level
        if x.shape[1] == 3:
            weights = torch.tensor(_LUMA, dtype=x.dtype, device=x.device)
            mean = x.mean(dim=(2, 3)) @ weights
        else:
            mean = x.mean(dim=(1, 2, 3))
        bias = per_image(np.where(op == 1, 1.0 - f, 0.0)) * mean.view(b, 1, 1, 1)
    if (op == 2).any():  # saturation: blend with the pixel's luma
        gray = luma(x).mul_(per_image(np.where(op == 2, 1.0 - f, 0.0)))
        bias = gray if bias is None else gray.add_(bias)
    y = x * per_image(f)
    return (y if bias is None else y.add_(bias)).clamp_(0.0, 1.0)


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
        return jitter_rows(x, factors, order, apply)
