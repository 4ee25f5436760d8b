"""Random resized crop with horizontal flip, batched as one ``grid_sample`` call."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ssl_data.transforms.compose import check_probability, check_uniforms
from ssl_data.transforms.normalize import as_float_images

ATTEMPTS = 10
CROP_UNIFORMS = 2 * ATTEMPTS + 2


def sample_crop_boxes(
    u: np.ndarray,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> np.ndarray:
    """Sample crop boxes the way torchvision's ``RandomResizedCrop`` does, for a whole batch.

    Each sample tries ``attempts`` (area fraction, log aspect ratio) pairs and keeps the first box
    that fits in the image; when none fits it falls back to the largest centred box with the
    aspect ratio clamped to ``ratio``. Boxes may be smaller than the output size: they are
    upsampled (an image smaller than the output is handled the same way).

    Args:
        u: ``(B, 2 * attempts + 2) float64`` uniforms in [0, 1) (see :mod:`ssl_data.randomness`).
        height: Input height in pixels.
        width: Input width in pixels.
        scale: Range of the crop area as a fraction of the image area.
        ratio: Range of the crop aspect ratio (width / height).
        attempts: Number of tries before the fallback.

    Returns:
        ``(B, 4) float64`` boxes ``(top, left, h, w)`` in pixels (fractional).

    Raises:
        ValueError: ``u`` has too few columns, or a range is empty or non-positive.

    Reference: Szegedy et al., "Going deeper with convolutions" (arXiv:1409.4842), as used by
    SimCLR (Chen et al., arXiv:2002.05709).
    """
    if u.ndim != 2 or u.shape[1] < 2 * attempts + 2:
        raise ValueError(f"u must be (B, {2 * attempts + 2}), got {u.shape}")
    if not (0 < scale[0] <= scale[1]) or not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"invalid scale {scale} or ratio {ratio}")
    area = float(height * width)
    s = scale[0] + (scale[1] - scale[0]) * u[:, :attempts]
    log_r = (
        math.log(ratio[0])
        + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, attempts : 2 * attempts]
    )
    r = np.exp(log_r)
    w = np.sqrt(area * s * r)
    h = np.sqrt(area * s / r)
    ok = (w <= width) & (h <= height)
    first = np.where(ok.any(axis=1), ok.argmax(axis=1), -1)
    rows = np.arange(len(u))
    w_sel = np.where(first >= 0, w[rows, first], 0.0)
    h_sel = np.where(first >= 0, h[rows, first], 0.0)
    # Fallback: the whole image, aspect ratio clamped into the range (torchvision's rule).
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = float(width), width / ratio[0]
    elif in_ratio > ratio[1]:
        fw, fh = height * ratio[1], float(height)
    else:
        fw, fh = float(width), float(height)
    fb = first < 0
    w_sel = np.where(fb, fw, w_sel)
    h_sel = np.where(fb, fh, h_sel)
    top = u[:, 2 * attempts] * (height - h_sel)
    left = u[:, 2 * attempts + 1] * (width - w_sel)
    return np.stack([top, left, h_sel, w_sel], axis=1)


def resized_crop_flip(
    images: torch.Tensor, boxes: np.ndarray, flip: np.ndarray, size: tuple[int, int]
) -> torch.Tensor:
    """Crop each image to its box, resize it bilinearly to ``size`` and mirror it where ``flip``.

    Args:
        images: ``(B, C, H, W)`` float images.
        boxes: ``(B, 4)`` boxes ``(top, left, h, w)`` in pixels, from :func:`sample_crop_boxes`.
        flip: ``(B,)`` bool, mirror horizontally.
        size: Output ``(height, width)`` in pixels.

    Returns:
        ``(B, C, size[0], size[1])`` tensor of the input's dtype and device.

    Raises:
        ValueError: The shapes disagree.
    """
    if images.ndim != 4 or boxes.shape != (images.shape[0], 4) or flip.shape != (images.shape[0],):
        raise ValueError(
            f"images (B, C, H, W), boxes (B, 4), flip (B,) expected; got {tuple(images.shape)}, "
            f"{boxes.shape}, {flip.shape}"
        )
    b, _, height, width = images.shape
    top, left, h, w = np.asarray(boxes, dtype=np.float64).T
    # affine_grid's map for a box is separable (x depends on the column only, y on the row only),
    # so it is computed per column and per row in float64 and broadcast: no (B, H*W, 3) x
    # (B, 3, 2) product, and the sampling points are exact to float32.
    gx = _axis_grid(left, w, width, size[1], np.where(flip, -1.0, 1.0))
    gy = _axis_grid(top, h, height, size[0], np.ones(b))
    grid = torch.empty((b, *size, 2), dtype=images.dtype, device=images.device)
    grid[..., 0] = gx.to(device=images.device, dtype=images.dtype).view(b, 1, size[1])
    grid[..., 1] = gy.to(device=images.device, dtype=images.dtype).view(b, size[0], 1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _axis_grid(
    start: np.ndarray, length: np.ndarray, extent: int, n_out: int, sign: np.ndarray
) -> torch.Tensor:
    """``(B, n_out) float64`` sampling positions along one axis, in ``grid_sample``'s [-1, 1].

    Output pixel ``j`` (centre ``(2 j + 1) / n_out - 1`` with ``align_corners=False``) maps to
    the point at the same relative place in ``[start, start + length]`` (mirrored where
    ``sign`` is -1), in units of the input ``extent``.
    """
    centres = (2 * np.arange(n_out) + 1) / n_out - 1
    scale = (length / extent) * sign
    offset = (2 * start + length) / extent - 1
    return torch.from_numpy(scale[:, None] * centres[None, :] + offset[:, None])


@dataclass(frozen=True)
class RandomResizedCrop:
    """Random resized crop (torchvision's box rule) fused with an optional horizontal flip.

    Reads 23 uniforms per sample: 22 for the box (:func:`sample_crop_boxes`, 10 attempts), then
    one for the flip coin. Crop and flip run as one bilinear ``grid_sample``; boxes smaller than
    the output (and images smaller than the output) are upsampled, never an error.

    Args:
        size: Output side in pixels, or ``(height, width)``.
        scale: Range of the crop area as a fraction of the image area.
        ratio: Range of the crop aspect ratio (width / height).
        hflip_p: Probability of a horizontal mirror.

    Raises:
        ValueError: A size below 1, an empty range or a probability outside [0, 1].

    Reference: Szegedy et al., arXiv:1409.4842; SimCLR (Chen et al., arXiv:2002.05709).
    """

    size: int | tuple[int, int] = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.0

    def __post_init__(self) -> None:
        if min(self.output_size) < 1:
            raise ValueError(f"size must be >= 1 pixel, got {self.size}")
        if not (0 < self.scale[0] <= self.scale[1]) or not (0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"invalid scale {self.scale} or ratio {self.ratio}")
        check_probability("hflip_p", self.hflip_p)

    @property
    def output_size(self) -> tuple[int, int]:
        """``(height, width)`` of the output in pixels."""
        return (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)  # type: ignore[return-value]

    @property
    def num_uniforms(self) -> int:
        """23: the box (22), the flip coin (1)."""
        return CROP_UNIFORMS + 1

    def boxes(self, u: np.ndarray, height: int, width: int) -> np.ndarray:
        """The ``(B, 4)`` boxes ``(top, left, h, w)`` in pixels that ``u`` selects."""
        return sample_crop_boxes(u[:, :CROP_UNIFORMS], height, width, self.scale, self.ratio)

    def __call__(self, images: torch.Tensor, u: np.ndarray) -> torch.Tensor:
        """Crop, resize and maybe mirror ``(B, C, H, W)`` images.

        Returns:
            ``(B, C, size, size) float32`` in [0, 1].
        """
        x = as_float_images(images)
        check_uniforms(u, x.shape[0], self.num_uniforms, "RandomResizedCrop")
        boxes = self.boxes(u, x.shape[2], x.shape[3])
        return resized_crop_flip(x, boxes, u[:, CROP_UNIFORMS] < self.hflip_p, self.output_size)
