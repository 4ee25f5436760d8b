"""Server-side preprocessing (numpy and Pillow only, never torch)."""

from ssl_serve.preprocess.image import (
    DEFAULT_MAX_PIXELS,
    IMAGE_FORMATS,
    decode_image,
    image_to_array,
    normalize_pixels,
    preprocess_image,
    preprocess_images,
)
from ssl_serve.preprocess.tensor import decode_tensor

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_FORMATS",
    "decode_image",
    "decode_tensor",
    "image_to_array",
    "normalize_pixels",
    "preprocess_image",
    "preprocess_images",
]
