"""The image operations RandAugment and TrivialAugment sample from, with their magnitude tables.

Each operation takes ``(n, C, H, W)`` float images in [0, 1] and ``(n,)`` magnitudes (already
signed where the operation is symmetric) and returns ``(n, C, H, W)`` float images in [0, 1].
Names and magnitude tables follow torchvision's ``RandAugment`` and ``TrivialAugmentWide``
(31 bins by default): the magnitude of bin ``i`` is ``table[i]``. Geometric operations fill with
black; colour operations leave RGBA alpha untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ssl_data.transforms.affine import warp_affine
from ssl_data.transforms.channels import merge_alpha, split_alpha
from ssl_data.transforms.color_jitter import adjust_brightness, adjust_contrast, adjust_saturation
from ssl_data.transforms.rotation import rotate
from ssl_data.transforms.solarize import solarize

AugmentOp = Callable[[torch.Tensor, np.ndarray], torch.Tensor]


def _linear(images: torch.Tensor, a: np.ndarray) -> torch.Tensor:
    """Warp by per-sample ``(n, 2, 3)`` output-to-input pixel maps, black fill."""
    return warp_affine(images, a, fill_mode="constant", cval=0.0)


def shear_x(images: torch.Tensor, m: np.ndarray) -> torch.Tensor:
    """Shear along columns about the top-left corner: ``col_in = col + m * row``."""
    a = np.zeros((len(m), 2, 3))
    a[:, 0, 0] = a[:, 1, 1] = 1.0
    a[:, 1, 0] = m
    return _linear(images, a)


def shear_y(images: torch.Tensor, m: np.ndarray) -> torch.Tensor:
    """Shear along rows about the top-left corner: ``row_in = row + m * col``."""
    a = np.zeros((len(m), 2, 3))
    a[:, 0, 0] = a[:, 1, 1] = 1.0
    a[:, 0, 1] = m
    return _linear(images, a)


def translate_x(images: torch.Tensor, m: np.ndarray) -> torch.Tensor:
    """Move the content ``m`` pixels to the right."""
    a = np.zeros((len(m), 2, 3))
    a[:, 0, 0] = a[:, 1, 1] = 1.0
    a[:, 1, 2] = -m
    return _linear(images, a)


def translate_y(images: torch.Tensor, m: np.ndarray) -> torch.Tensor:
    """Move the content ``m`` pixels down."""
    a = np.zeros((len(m), 2, 3))
    a[:, 0, 0] = a[:, 1, 1] = 1.0
    a[:, 0, 2] = -m
    return _linear(images, a)


def rotate_op(images: torch.Tensor, m: np.ndarray) -> torch.Tensor:
    """Rotate counter-clockwise by ``m`` degrees about the centre, black fill."""
    return rotate(images, m, fill_mode="constant", cval=0.0)


def brightness(images: torch.Tensor, m: np.ndarray) -> torch.Tensor:
    """Brightness factor ``1 + m``."""
    return adjust_brightness(images, 1.0 + m)


def color(images: torch.Tensor, m: np.ndarray) -> torch.Tensor:
    """Saturation factor ``1 + m`` (PIL's ``Color``); gray images unchanged."""
    return adjust_saturation(images, 1.0 + m)


def contrast(images: torch.Tensor, m: np.ndarray) -> torch.Tensor:
    """Contrast factor ``1 + m``."""
    return adjust_contrast(images, 1.0 + m)


def sharpness(images: torch.Tensor, m: np.ndarray) -> torch.Tensor:
    """PIL's sharpness with factor ``1 + m`` (``kornia.enhance.sharpness``); needs 3x3 pixels."""
    colour, alpha = split_alpha(images)
    if min(colour.shape[-2:]) < 3:
        return images
    f = torch.as_tensor(1.0 + m, dtype=images.dtype, device=images.device)
    import kornia  # imported on first use: it adds ~2 s to `import ssl_data`

    return merge_alpha(kornia.enhance.sharpness(colour, f).clamp(0.0, 1.0), alpha)


def posterize(images: torch.Tensor, m: np.ndarray) -> torch.Tensor:
    """Keep the ``m`` (0..8) high bits of each 8-bit level ``round(255 x)``; 8 bits = unchanged."""
    colour, alpha = split_alpha(images)
    bits = torch.as_tensor(np.asarray(m, dtype=np.int64), device=images.device).view(-1, 1, 1, 1)
    levels = torch.round(colour * 255).to(torch.int64)
    shift = 8 - bits
    mask = (torch.full_like(bits, 255) >> shift) << shift
    out = torch.where(bits == 8, colour, (levels & mask).to(colour.dtype) / 255.0)
    return merge_alpha(out, alpha)


def solarize_op(images: torch.Tensor, m: np.ndarray) -> torch.Tensor:
    """Invert the pixels at or above threshold ``m`` (in [0, 1])."""
    return solarize(images, np.asarray(m, dtype=np.float64))


def autocontrast(images: torch.Tensor, m: np.ndarray) -> torch.Tensor:
    """Stretch each channel linearly so its minimum is 0 and maximum 1 (flat channels kept)."""
    colour, alpha = split_alpha(images)
    lo = colour.amin(dim=(2, 3), keepdim=True)
    hi = colour.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    flat = span <= 0
    out = torch.where(flat, colour, (colour - lo) / torch.where(flat, torch.ones_like(span), span))
    return merge_alpha(out.clamp(0.0, 1.0), alpha)


def equalize(images: torch.Tensor, m: np.ndarray) -> torch.Tensor:
    """Histogram-equalise each channel over its 256 8-bit levels (``kornia.enhance.equalize``)."""
    colour, alpha = split_alpha(images)
    # kornia reads the level as trunc(255 x): nudge exact levels k / 255 off the rounding edge.
    levels = ((torch.round(colour * 255) + 0.25) / 255.0).clamp(0.0, 1.0)
    import kornia  # imported on first use: it adds ~2 s to `import ssl_data`

    return merge_alpha(kornia.enhance.equalize(levels), alpha)


def identity(images: torch.Tensor, m: np.ndarray) -> torch.Tensor:
    """Leave the images unchanged."""
    return images


# name -> (operation, symmetric: a random sign is applied to the magnitude)
AUGMENT_OPS: dict[str, tuple[AugmentOp, bool]] = {
    "Identity": (identity, False),
    "ShearX": (shear_x, True),
    "ShearY": (shear_y, True),
    "TranslateX": (translate_x, True),
    "TranslateY": (translate_y, True),
    "Rotate": (rotate_op, True),
    "Brightness": (brightness, True),
    "Color": (color, True),
    "Contrast": (contrast, True),
    "Sharpness": (sharpness, True),
    "Posterize": (posterize, False),
    "Solarize": (solarize_op, False),
    "AutoContrast": (autocontrast, False),
    "Equalize": (equalize, False),
}
OP_NAMES = tuple(AUGMENT_OPS)
# Operations that leave any image unchanged at magnitude bin 0.
IDENTITY_AT_ZERO = (
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate",
    "Brightness", "Color", "Contrast", "Sharpness", "Posterize",
)  # fmt: skip


def magnitude_table(name: str, num_bins: int, height: int, width: int, wide: bool) -> np.ndarray:
    """The ``(num_bins,)`` magnitudes of operation ``name``.

    Args:
        name: One of :data:`OP_NAMES`.
        num_bins: Number of magnitude bins (>= 2).
        height: Image height in pixels (for TranslateY).
        width: Image width in pixels (for TranslateX).
        wide: TrivialAugment's wide ranges instead of RandAugment's.

    Returns:
        ``(num_bins,) float64`` magnitudes, bin 0 first.

    Raises:
        ValueError: Unknown name or fewer than 2 bins.
    """
    if name not in AUGMENT_OPS:
        raise ValueError(f"unknown augmentation op {name!r}; known: {OP_NAMES}")
    if num_bins < 2:
        raise ValueError(f"num_bins must be >= 2, got {num_bins}")
    zero = np.zeros(num_bins)
    if name in ("ShearX", "ShearY"):
        return np.linspace(0.0, 0.99 if wide else 0.3, num_bins)
    if name == "TranslateX":
        return np.linspace(0.0, 32.0 if wide else 150.0 / 331.0 * width, num_bins)
    if name == "TranslateY":
        return np.linspace(0.0, 32.0 if wide else 150.0 / 331.0 * height, num_bins)
    if name == "Rotate":
        return np.linspace(0.0, 135.0 if wide else 30.0, num_bins)
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return np.linspace(0.0, 0.99 if wide else 0.9, num_bins)
    if name == "Posterize":
        steps = 6 if wide else 4
        return 8 - np.round(np.arange(num_bins) / ((num_bins - 1) / steps))
    if name == "Solarize":
        return np.linspace(1.0, 0.0, num_bins)
    return zero


def apply_op(name: str, images: torch.Tensor, magnitude: np.ndarray) -> torch.Tensor:
    """Run operation ``name`` with per-image ``(n,)`` magnitudes on ``(n, C, H, W)`` images."""
    return AUGMENT_OPS[name][0](images, magnitude)


def check_op_names(ops: tuple[str, ...]) -> None:
    """Raise ``ValueError`` unless ``ops`` is a non-empty tuple of known operation names."""
    unknown = [o for o in ops if o not in AUGMENT_OPS]
    if not ops or unknown:
        raise ValueError(f"ops must be a non-empty subset of {OP_NAMES}, got {ops}")
