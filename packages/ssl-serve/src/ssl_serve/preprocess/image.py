"""Image preprocessing on the server: encoded PNG/JPEG bytes to the model's NCHW float32 input.

Follows a bundle's :class:`~ssl_serve.bundle.ImagePreprocessing` (docs/contracts.md): decode with
Pillow; convert to "L" (1 channel) or "RGB" (3 channels) with Pillow's conversion (ITU-R 601-2
luma for RGB to L; an alpha channel is dropped); resize to ``image_size`` with the bundle's
filter when the size differs (Pillow's filters, which antialias when downscaling); multiply by
``scale``; subtract ``mean`` and divide by ``std`` per channel, in float32. EXIF orientation is
not applied, as in Pillow's and torchvision's defaults. numpy and Pillow only, no torch.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ssl_serve.bundle import ImagePreprocessing
from ssl_serve.errors import InvalidInputError

IMAGE_FORMATS = ("PNG", "JPEG")
DEFAULT_MAX_PIXELS = 4096 * 4096
_MODES = {1: "L", 3: "RGB"}
_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "bicubic": Image.Resampling.BICUBIC,
}


def decode_image(
    data: bytes, *, index: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode one PNG or JPEG image fully (so truncated files fail here, not later).

    Args:
        data: The encoded file's bytes.
        index: Position of the image in its request, named in errors.
        max_pixels: Largest width x height accepted, in pixels (guards against decompression
            bombs); checked from the header, before decoding the pixels.

    Returns:
        The decoded image, in the file's own mode and size.

    Raises:
        InvalidInputError: The bytes are empty, not PNG/JPEG, corrupt or truncated, or the image
            is larger than ``max_pixels``.
    """
    if not data:
        raise InvalidInputError("image is empty (0 bytes); send PNG or JPEG bytes", index=index)
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        width, height = image.size
        if width * height > max_pixels:
            raise InvalidInputError(
                f"image is {width}x{height} pixels, more than the {max_pixels} the server accepts",
                index=index,
            )
        image.load()
    except InvalidInputError:
        raise
    except UnidentifiedImageError:
        raise InvalidInputError(
            f"cannot decode image ({len(data)} bytes): not a {' or '.join(IMAGE_FORMATS)} file",
            index=index,
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InvalidInputError(
            f"cannot decode image ({len(data)} bytes): {e}", index=index
        ) from None
    return image


def image_to_array(image: Image.Image, spec: ImagePreprocessing) -> np.ndarray:
    """Convert, resize and normalise one decoded image.

    Args:
        image: A decoded Pillow image of any mode and size.
        spec: The bundle's preprocessing parameters.

    Returns:
        ``(C, H, W) float32`` with C = ``spec.channels`` and (H, W) = ``spec.image_size``.
    """
    mode = _MODES[spec.channels]
    if image.mode != mode:
        image = image.convert(mode)
    height, width = spec.image_size
    if image.size != (width, height):
        image = image.resize((width, height), _FILTERS[spec.resize])
    pixels = np.asarray(image, dtype=np.uint8).reshape(height, width, spec.channels)
    return normalize_pixels(pixels[None], spec)[0]


def normalize_pixels(pixels: np.ndarray, spec: ImagePreprocessing) -> np.ndarray:
    """Scale and standardise images that already have the model's size and channel count.

    Args:
        pixels: ``(N, H, W, C) uint8`` images (the layout of a checkpoint's "images").
        spec: The bundle's preprocessing parameters.

    Returns:
        ``(N, C, H, W) float32``: ``(pixels * scale - mean) / std`` per channel.

    Raises:
        InvalidInputError: ``pixels`` is not ``(N, H, W, C)`` with the bundle's C, H and W.
    """
    height, width = spec.image_size
    if pixels.ndim != 4 or pixels.shape[1:] != (height, width, spec.channels):
        raise InvalidInputError(
            f"pixels must be (N, {height}, {width}, {spec.channels}), got {pixels.shape}"
        )
    x = pixels.astype(np.float32) * np.float32(spec.scale)
    x -= np.asarray(spec.mean, dtype=np.float32)
    x /= np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def preprocess_image(
    data: bytes,
    spec: ImagePreprocessing,
    *,
    index: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode and preprocess one encoded image.

    Args:
        data: PNG or JPEG bytes, of any size and channel count.
        spec: The bundle's preprocessing parameters.
        index: Position of the image in its request, named in errors.
        max_pixels: Largest width x height accepted, in pixels.

    Returns:
        ``(C, H, W) float32``.

    Raises:
        InvalidInputError: The bytes cannot be decoded (the message names ``index``).
    """
    return image_to_array(decode_image(data, index=index, max_pixels=max_pixels), spec)


def preprocess_images(
    images: Sequence[bytes], spec: ImagePreprocessing, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode and preprocess a batch of encoded images.

    Args:
        images: N PNG or JPEG files' bytes.
        spec: The bundle's preprocessing parameters.
        max_pixels: Largest width x height accepted per image, in pixels.

    Returns:
        ``(N, C, H, W) float32``.

    Raises:
        InvalidInputError: An image cannot be decoded (the message names its index).
    """
    height, width = spec.image_size
    out = np.empty((len(images), spec.channels, height, width), dtype=np.float32)
    for i, data in enumerate(images):
        out[i] = preprocess_image(data, spec, index=i, max_pixels=max_pixels)
    return out
