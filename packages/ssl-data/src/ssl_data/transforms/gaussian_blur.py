"""Gaussian blur with a per-sample sigma and a kernel size taken from the image size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.transforms.channels import merge_alpha, split_alpha
from ssl_data.transforms.compose import apply_where, check_probability, check_uniforms
from ssl_data.transforms.normalize import as_float_images


def blur_kernel_size(height: int, width: int, fraction: float = 0.1) -> int:
    """SimCLR's kernel rule: ``fraction`` of the image side, made odd, at least 3.

    The size is capped so that reflect padding fits (``2 * min(H, W) - 1``); 224 pixels give 23.

    Args:
        height: Image height in pixels.
        width: Image width in pixels.
        fraction: Kernel side as a fraction of the smaller image side.

    Returns:
        Odd kernel side in pixels (1 means no blur is possible, for 1-pixel images).

    Raises:
        ValueError: ``fraction`` is not positive.
    """
    if fraction <= 0:
        raise ValueError(f"fraction must be > 0, got {fraction}")
    k = max(3, int(fraction * min(height, width)))
    k += 1 - k % 2
    return min(k, 2 * min(height, width) - 1)


def gaussian_blur(images: torch.Tensor, sigma: np.ndarray, kernel_size: int) -> torch.Tensor:
    """Blur each image with its own isotropic Gaussian (reflect padding; alpha untouched).

    The kernel is ``exp(-x^2 / (2 sigma^2))`` sampled at integer offsets ``x`` in
    ``[-(k // 2), k // 2]`` and normalised to sum 1, applied separably
    (``kornia.filters.gaussian_blur2d``).

    Args:
        images: ``(B, C, H, W)`` float, C in {1, 3, 4}.
        sigma: ``(B,)`` standard deviations in pixels (> 0).
        kernel_size: Odd kernel side in pixels (see :func:`blur_kernel_size`); 1 = no blur.

    Returns:
        ``(B, C, H, W)`` float.

    Raises:
        ValueError: ``sigma`` has the wrong shape or a non-positive entry, or ``kernel_size`` is
            even or too large for reflect padding.
    """
    b, _, h, w = images.shape
    if sigma.shape != (b,) or (sigma <= 0).any():
        raise ValueError(f"sigma must be ({b},) positive, got {sigma}")
    if kernel_size % 2 == 0 or kernel_size // 2 >= min(h, w):
        raise ValueError(
            f"kernel_size must be odd and < 2 * min(H, W), got {kernel_size} for {h}x{w}"
        )
    if kernel_size == 1:
        return images
    colour, alpha = split_alpha(images)
    s = torch.as_tensor(sigma, dtype=images.dtype, device=images.device).view(b, 1).repeat(1, 2)
    import kornia  # imported on first use: it adds ~2 s to `import ssl_data`

    out = kornia.filters.gaussian_blur2d(colour, (kernel_size, kernel_size), s, "reflect")
    return merge_alpha(out, alpha)


@dataclass(frozen=True)
class GaussianBlur:
    """Gaussian blur with probability ``p`` and sigma uniform in ``sigma`` (two uniforms).

    Args:
        p: Probability of blurring a sample.
        sigma: Range of the standard deviation in pixels.
        kernel_fraction: Kernel side as a fraction of the image side (SimCLR: 10%).

    Raises:
        ValueError: ``p`` outside [0, 1] or an invalid sigma range.

    Reference: Chen et al., arXiv:2002.05709, Appendix A.
    """

    p: float = 0.5
    sigma: tuple[float, float] = (0.1, 2.0)
    kernel_fraction: float = 0.1

    def __post_init__(self) -> None:
        check_probability("p", self.p)
        if not 0 < self.sigma[0] <= self.sigma[1]:
            raise ValueError(f"sigma must be a range of positive pixels, got {self.sigma}")

    @property
    def num_uniforms(self) -> int:
        """Two: the coin, sigma."""
        return 2

    def __call__(self, images: torch.Tensor, u: np.ndarray) -> torch.Tensor:
        """Maybe blur ``(B, C, H, W)`` images; returns float32."""
        x = as_float_images(images)
        check_uniforms(u, x.shape[0], 2, "GaussianBlur")
        k = blur_kernel_size(x.shape[2], x.shape[3], self.kernel_fraction)
        sigma = self.sigma[0] + (self.sigma[1] - self.sigma[0]) * u[:, 1]
        return apply_where(x, u[:, 0] < self.p, lambda s, rows: gaussian_blur(s, sigma[rows], k))
