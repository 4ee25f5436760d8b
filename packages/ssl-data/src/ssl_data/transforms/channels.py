"""Channel layouts: gray (1), RGB (3) and RGBA (4), with alpha kept out of colour operations."""

from __future__ import annotations

import torch

SUPPORTED_CHANNELS = (1, 3, 4)


def check_images(images: torch.Tensor) -> None:
    """Check that ``images`` is a ``(B, C, H, W)`` batch with 1, 3 or 4 channels.

    Args:
        images: The batch to check.

    Raises:
        ValueError: The tensor is not 4-D or C is not 1, 3 or 4.
    """
    if images.ndim != 4 or images.shape[1] not in SUPPORTED_CHANNELS:
        raise ValueError(
            f"images must be (B, C, H, W) with C in {SUPPORTED_CHANNELS} (gray, RGB, RGBA), "
            f"got {tuple(images.shape)}"
        )


def split_alpha(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Separate the colour channels from an alpha channel.

    Args:
        images: ``(B, C, H, W)`` with C in {1, 3, 4}.

    Returns:
        ``(colour, alpha)``: ``(B, 1|3, H, W)`` and, for RGBA input, ``(B, 1, H, W)`` alpha
        (``None`` otherwise).

    Raises:
        ValueError: See :func:`check_images`.
    """
    check_images(images)
    if images.shape[1] == 4:
        return images[:, :3], images[:, 3:]
    return images, None


def merge_alpha(colour: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
    """Inverse of :func:`split_alpha`: append ``alpha`` (when given) after the colour channels."""
    return colour if alpha is None else torch.cat([colour, alpha.to(colour.dtype)], dim=1)


def luma(colour: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma ``0.299 R + 0.587 G + 0.114 B`` (the gray level itself for one channel).

    Args:
        colour: ``(B, 1|3, H, W)`` float images.

    Returns:
        ``(B, 1, H, W)`` gray levels, same dtype.
    """
    if colour.shape[1] == 1:
        return colour
    r, g, b = colour[:, 0:1], colour[:, 1:2], colour[:, 2:3]
    return (r * 0.299).add_(g, alpha=0.587).add_(b, alpha=0.114)  # one temporary, not four
