"""Random grayscale: replace the colour by its luma, keeping the channel count."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.transforms.channels import luma, merge_alpha, split_alpha
from ssl_data.transforms.compose import check_probability, check_uniforms
from ssl_data.transforms.normalize import as_float_images


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """Replace R, G and B by the luma ``0.299 R + 0.587 G + 0.114 B`` (alpha untouched).

    Args:
        images: ``(B, C, H, W)`` float, C in {1, 3, 4}; gray images come back unchanged.

    Returns:
        ``(B, C, H, W)`` float (C kept, as torchvision's ``RandomGrayscale``).

    Raises:
        ValueError: C is not 1, 3 or 4.
    """
    colour, alpha = split_alpha(images)
    if colour.shape[1] == 1:
        return images
    return merge_alpha(luma(colour).expand(-1, 3, -1, -1).contiguous(), alpha)


@dataclass(frozen=True)
class RandomGrayscale:
    """Convert a sample to grayscale with probability ``p`` (one uniform per sample).

    Args:
        p: Probability of conversion.

    Reference: Chen et al., arXiv:2002.05709, Appendix A.
    """

    p: float = 0.2

    def __post_init__(self) -> None:
        check_probability("p", self.p)

    @property
    def num_uniforms(self) -> int:
        """One: the coin."""
        return 1

    def __call__(self, images: torch.Tensor, u: np.ndarray) -> torch.Tensor:
        """Maybe gray ``(B, C, H, W)`` images; returns float32 in [0, 1]."""
        x = as_float_images(images)
        check_uniforms(u, x.shape[0], 1, "RandomGrayscale")
        mask = u[:, 0] < self.p
        colour, alpha = split_alpha(x)
        if colour.shape[1] == 1 or not mask.any():
            return x
        if mask.all():
            return grayscale(x)
        # One pass over the batch, exact for both kinds of rows: luma * 1 + x * 0 = luma where
        # chosen, luma * 0 + x * 1 = x elsewhere (cheaper than a broadcast where or a scatter).
        m = torch.from_numpy(mask.astype(np.float32)).to(x.device, x.dtype).view(-1, 1, 1, 1)
        return merge_alpha(torch.addcmul(luma(colour).mul_(m), colour, 1.0 - m), alpha)
