"""Image decoding with Pillow: encoded bytes or files to ``(C, H, W) uint8`` tensors."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from PIL import Image, ImageOps

from ssl_data.errors import CorruptFileError

ImageMode = Literal["L", "RGB", "RGBA"]
# Suffixes (lower case) that image folders and shards treat as images.
IMAGE_EXTENSIONS = (
    ".bmp", ".gif", ".jpeg", ".jpg", ".pbm", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp",
)  # fmt: skip


def check_mode(mode: str) -> ImageMode:
    """Return ``mode`` if it is a supported Pillow mode.

    Raises:
        ValueError: ``mode`` is not "L" (gray, 1 channel), "RGB" (3) or "RGBA" (4).
    """
    if mode not in get_args(ImageMode):
        raise ValueError(f"mode must be one of {get_args(ImageMode)}, got {mode!r}")
    return mode  # type: ignore[return-value]


def _open(source: str | Path | bytes) -> Image.Image:
    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)


def _name(source: str | Path | bytes, name: str | None) -> str:
    if name is not None:
        return name
    return f"<{len(source)} bytes>" if isinstance(source, bytes) else str(source)


def decode_image(
    source: str | Path | bytes, mode: ImageMode = "RGB", name: str | None = None
) -> torch.Tensor:
    """Decode an image file (any format Pillow reads) into a tensor.

    The EXIF orientation tag is applied (a photo taken sideways comes out upright), then the
    image is converted to ``mode`` with Pillow's rules (e.g. RGB to L by ITU-R 601-2 luma,
    palette transparency to alpha).

    Args:
        source: A file path or the encoded bytes.
        mode: "L" (1 channel), "RGB" (3) or "RGBA" (4).
        name: How errors name the image (default: the path, or the byte count).

    Returns:
        ``(C, H, W) uint8`` tensor in [0, 255], C = 1, 3 or 4, H and W in pixels.

    Raises:
        ValueError: ``mode`` is not supported.
        CorruptFileError: The data cannot be decoded (unknown format, truncated, too large for
            Pillow's decompression-bomb limit); the message names the image.
    """
    check_mode(mode)
    try:
        with _open(source) as img:
            upright = ImageOps.exif_transpose(img)
            array = np.asarray(upright.convert(mode))
    # Pillow's decoders raise many exception types for bad data (OSError, SyntaxError,
    # ValueError, EOFError, struct.error, ...); all of them mean "this file is not an image".
    except Exception as e:
        raise CorruptFileError(
            f"cannot decode image {_name(source, name)}: {type(e).__name__}: {e}"
        ) from e
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(np.array(array.transpose(2, 0, 1), order="C"))  # a writable copy


def probe_image(source: str | Path | bytes, name: str | None = None) -> tuple[int, int]:
    """Read an image's header only (cheap: no pixel decoding) and return its size.

    A file that passes this check can still fail :func:`decode_image` (e.g. a truncated body);
    datasets handle that case at access time.

    Args:
        source: A file path or the encoded bytes.
        name: How errors name the image.

    Returns:
        ``(height, width)`` in pixels, after the EXIF orientation is applied.

    Raises:
        CorruptFileError: The header is unreadable or the image is empty.
    """
    try:
        with _open(source) as img:
            width, height = img.size
            orientation = img.getexif().get(0x0112, 1)  # EXIF Orientation tag
    except Exception as e:  # see decode_image: Pillow's many error types
        raise CorruptFileError(
            f"cannot read image header {_name(source, name)}: {type(e).__name__}: {e}"
        ) from e
    if width < 1 or height < 1:
        raise CorruptFileError(f"image {_name(source, name)} is empty ({width}x{height} pixels)")
    # Orientations 5-8 swap width and height (rotations by 90 or 270 degrees).
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)
