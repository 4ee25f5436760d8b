"""Image operations, batched over ``(B, C, H, W)`` tensors with per-sample parameters."""

from ssl_data.transforms.affine import FILL_MODES, RandomAffine, affine_matrices, warp_affine
from ssl_data.transforms.channels import luma, merge_alpha, split_alpha
from ssl_data.transforms.color_jitter import (
    ColorJitter,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    brightness_contrast,
    color_jitter,
)
from ssl_data.transforms.compose import Compose, RandomOp, apply_where
from ssl_data.transforms.erasing import Cutout, RandomErasing, erase, sample_erase_boxes
from ssl_data.transforms.flip import RandomFlip, flip
from ssl_data.transforms.gaussian_blur import GaussianBlur, blur_kernel_size, gaussian_blur
from ssl_data.transforms.grayscale import RandomGrayscale, grayscale
from ssl_data.transforms.normalize import Normalize, as_float_images, normalize
from ssl_data.transforms.random_resized_crop import (
    RandomResizedCrop,
    resized_crop_flip,
    sample_crop_boxes,
)
from ssl_data.transforms.rotation import RandomRotation, rotate
from ssl_data.transforms.solarize import RandomSolarize, solarize

__all__ = [
    "FILL_MODES",
    "ColorJitter",
    "Compose",
    "Cutout",
    "GaussianBlur",
    "Normalize",
    "RandomAffine",
    "RandomErasing",
    "RandomFlip",
    "RandomGrayscale",
    "RandomOp",
    "RandomResizedCrop",
    "RandomRotation",
    "RandomSolarize",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "affine_matrices",
    "apply_where",
    "as_float_images",
    "blur_kernel_size",
    "brightness_contrast",
    "color_jitter",
    "erase",
    "flip",
    "gaussian_blur",
    "grayscale",
    "luma",
    "merge_alpha",
    "normalize",
    "resized_crop_flip",
    "rotate",
    "sample_crop_boxes",
    "sample_erase_boxes",
    "solarize",
    "split_alpha",
    "warp_affine",
]
