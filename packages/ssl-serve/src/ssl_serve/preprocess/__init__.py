"""Server-side preprocessing (numpy, Pillow and tokenizers only, never torch)."""

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
from ssl_serve.preprocess.text import (
    TextTokenizer,
    TokenizedTexts,
    decode_token_ids,
    length_sorted_batches,
    pad_sequences,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_FORMATS",
    "TextTokenizer",
    "TokenizedTexts",
    "decode_image",
    "decode_tensor",
    "decode_token_ids",
    "image_to_array",
    "length_sorted_batches",
    "normalize_pixels",
    "pad_sequences",
    "preprocess_image",
    "preprocess_images",
]
