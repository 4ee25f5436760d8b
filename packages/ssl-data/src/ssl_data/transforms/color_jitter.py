"""Brightness and contrast jitter (the colour jitter that applies to grayscale images)."""

from __future__ import annotations

import numpy as np
import torch


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
    bf = torch.as_tensor(brightness, dtype=images.dtype, device=images.device).view(b, 1, 1, 1)
    cf = torch.as_tensor(contrast, dtype=images.dtype, device=images.device).view(b, 1, 1, 1)
    x = (images * bf).clamp_(0.0, 1.0)
    gray = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2] if c == 3 else x[:, 0]
    mean = gray.mean(dim=(1, 2)).view(b, 1, 1, 1)
    return (cf * x + (1 - cf) * mean).clamp_(0.0, 1.0)
