"""Random erasing and Cutout: fill a rectangle of each image with a constant."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.transforms.channels import merge_alpha, split_alpha
from ssl_data.transforms.compose import check_probability, check_uniforms
from ssl_data.transforms.normalize import as_float_images

ERASE_ATTEMPTS = 10


def erase(images: torch.Tensor, boxes: np.ndarray, value: float = 0.0) -> torch.Tensor:
    """Set the pixels of each box to ``value`` (colour channels; alpha untouched).

    Args:
        images: ``(B, C, H, W)`` float images, C in {1, 3, 4}.
        boxes: ``(B, 4)`` integer boxes ``(top, left, h, w)`` in pixels; parts outside the image
            are ignored and ``h = 0`` or ``w = 0`` erases nothing.
        value: Fill value (e.g. 0 for black on [0, 1] images).

    Returns:
        ``(B, C, H, W)`` float images.

    Raises:
        ValueError: ``boxes`` is not ``(B, 4)``.
    """
    b, _, h, w = images.shape
    if boxes.shape != (b, 4):
        raise ValueError(f"boxes must be ({b}, 4), got {boxes.shape}")
    bx = torch.as_tensor(np.asarray(boxes, dtype=np.int64), device=images.device)
    rows = torch.arange(h, device=images.device).view(1, h)
    cols = torch.arange(w, device=images.device).view(1, w)
    in_rows = (rows >= bx[:, 0:1]) & (rows < bx[:, 0:1] + bx[:, 2:3])
    in_cols = (cols >= bx[:, 1:2]) & (cols < bx[:, 1:2] + bx[:, 3:4])
    mask = (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)  # (B, 1, H, W)
    colour, alpha = split_alpha(images)
    return merge_alpha(colour.masked_fill(mask, value), alpha)


def sample_erase_boxes(
    u: np.ndarray,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
) -> np.ndarray:
    """torchvision's ``RandomErasing`` box rule, batched.

    Up to 10 attempts draw an area fraction in ``scale`` and a log-uniform aspect ratio in
    ``ratio``; ``h = round(sqrt(area * r))``, ``w = round(sqrt(area / r))``; the first box with
    ``h < H`` and ``w < W`` is placed uniformly. When none fits, the box is empty.

    Args:
        u: ``(B, 22) float64`` uniforms: 10 area, 10 ratio, 2 position.
        height: Image height in pixels.
        width: Image width in pixels.
        scale: Range of the erased area as a fraction of the image.
        ratio: Range of the erased aspect ratio (height / width).

    Returns:
        ``(B, 4) int64`` boxes ``(top, left, h, w)``.

    Raises:
        ValueError: ``u`` has too few columns.

    Reference: Zhong et al., "Random Erasing Data Augmentation", arXiv:1708.04896.
    """
    n = ERASE_ATTEMPTS
    check_uniforms(u, len(u), 2 * n + 2, "sample_erase_boxes")
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[:, :n])
    lr = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, n : 2 * n]
    r = np.exp(lr)
    h = np.rint(np.sqrt(area * r)).astype(np.int64)
    w = np.rint(np.sqrt(area / r)).astype(np.int64)
    ok = (h < height) & (w < width) & (h > 0) & (w > 0)
    first = ok.argmax(axis=1)
    rows = np.arange(len(u))
    hs = np.where(ok.any(axis=1), h[rows, first], 0)
    ws = np.where(ok.any(axis=1), w[rows, first], 0)
    top = np.floor(u[:, 2 * n] * (height - hs + 1)).astype(np.int64)
    left = np.floor(u[:, 2 * n + 1] * (width - ws + 1)).astype(np.int64)
    return np.stack([top, left, hs, ws], axis=1)


@dataclass(frozen=True)
class RandomErasing:
    """Random erasing with probability ``p`` (23 uniforms: coin, then :func:`sample_erase_boxes`).

    Args:
        p: Probability of erasing a sample.
        scale: Range of the erased area fraction.
        ratio: Range of the erased aspect ratio.
        value: Fill value in [0, 1].

    Raises:
        ValueError: ``p`` outside [0, 1] or an empty range.

    Reference: Zhong et al., "Random Erasing Data Augmentation", arXiv:1708.04896.
    """

    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: float = 0.0

    def __post_init__(self) -> None:
        check_probability("p", self.p)
        if not (0 < self.scale[0] <= self.scale[1]) or not (0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"invalid scale {self.scale} or ratio {self.ratio}")

    @property
    def num_uniforms(self) -> int:
        """23: the coin, 22 for the box."""
        return 2 * ERASE_ATTEMPTS + 3

    def __call__(self, images: torch.Tensor, u: np.ndarray) -> torch.Tensor:
        """Maybe erase a box of ``(B, C, H, W)`` images; returns float32."""
        x = as_float_images(images)
        check_uniforms(u, x.shape[0], self.num_uniforms, "RandomErasing")
        boxes = sample_erase_boxes(u[:, 1:], x.shape[2], x.shape[3], self.scale, self.ratio)
        boxes[u[:, 0] >= self.p, 2:] = 0
        return erase(x, boxes, self.value)


@dataclass(frozen=True)
class Cutout:
    """Cutout: a ``length`` x ``length`` square centred at a uniform pixel, clipped at the border.

    Reads three uniforms: the coin, the centre row, the centre column.

    Args:
        length: Side of the square in pixels.
        p: Probability of cutting a sample (the paper: 1).
        value: Fill value in [0, 1].

    Raises:
        ValueError: ``length`` below 1 or ``p`` outside [0, 1].

    Reference: DeVries and Taylor, "Improved Regularization of Convolutional Neural Networks
    with Cutout", arXiv:1708.04552.
    """

    length: int = 16
    p: float = 1.0
    value: float = 0.0

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"length must be >= 1 pixel, got {self.length}")
        check_probability("p", self.p)

    @property
    def num_uniforms(self) -> int:
        """Three: coin, centre row, centre column."""
        return 3

    def __call__(self, images: torch.Tensor, u: np.ndarray) -> torch.Tensor:
        """Maybe cut a square out of ``(B, C, H, W)`` images; returns float32."""
        x = as_float_images(images)
        check_uniforms(u, x.shape[0], 3, "Cutout")
        h, w = x.shape[2], x.shape[3]
        cy = np.floor(u[:, 1] * h).astype(np.int64)
        cx = np.floor(u[:, 2] * w).astype(np.int64)
        top, left = np.clip(cy - self.length // 2, 0, h), np.clip(cx - self.length // 2, 0, w)
        bottom = np.clip(cy - self.length // 2 + self.length, 0, h)
        right = np.clip(cx - self.length // 2 + self.length, 0, w)
        boxes = np.stack([top, left, bottom - top, right - left], axis=1)
        boxes[u[:, 0] >= self.p, 2:] = 0
        return erase(x, boxes, self.value)
