"""Image operations, batched over ``(B, C, H, W)`` tensors with per-sample parameters."""

from ssl_data.transforms.color_jitter import brightness_contrast
from ssl_data.transforms.normalize import as_float_images, normalize
from ssl_data.transforms.random_resized_crop import resized_crop_flip, sample_crop_boxes

__all__ = [
    "as_float_images",
    "brightness_contrast",
    "normalize",
    "resized_crop_flip",
    "sample_crop_boxes",
]
