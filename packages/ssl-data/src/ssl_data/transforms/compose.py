"""Random operations and their composition: per-sample parameters from counter-based uniforms.

Every random operation here is a pure function of the images and a ``(B, num_uniforms)`` array of
uniform numbers (one row per sample, from :func:`ssl_data.randomness.uniform`). The operation
never draws numbers itself, so the same uniforms give the same output on any device, in any
worker, for any batch the sample happens to be in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ssl_data.transforms.channels import check_images
from ssl_data.transforms.normalize import as_float_images


@runtime_checkable
class RandomOp(Protocol):
    """A batched image operation whose random parameters are read from uniform numbers.

    ``num_uniforms`` is how many columns of ``u`` it reads; ``__call__(images, u)`` takes
    ``(B, C, H, W)`` images (uint8 in [0, 255] or float in [0, 1]) and ``u`` of shape
    ``(B, num_uniforms) float64`` in [0, 1), and returns ``(B, C, H', W') float`` images in
    [0, 1].
    """

    @property
    def num_uniforms(self) -> int:
        """Columns of ``u`` the operation reads."""
        ...

    def __call__(self, images: torch.Tensor, u: np.ndarray) -> torch.Tensor:
        """Apply the operation with per-sample parameters taken from ``u``."""
        ...


def check_uniforms(u: np.ndarray, batch: int, num: int, name: str) -> None:
    """Check that ``u`` is ``(batch, >= num)``.

    Raises:
        ValueError: ``u`` has the wrong shape; the message names the operation.
    """
    if u.ndim != 2 or u.shape[0] != batch or u.shape[1] < num:
        raise ValueError(f"{name} needs uniforms of shape ({batch}, {num}), got {u.shape}")


def check_probability(name: str, p: float) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``0 <= p <= 1``."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")


def apply_where(
    images: torch.Tensor,
    mask: np.ndarray,
    fn: Callable[[torch.Tensor, np.ndarray], torch.Tensor],
) -> torch.Tensor:
    """Apply ``fn`` to the samples where ``mask`` is true, leave the others as they are.

    Args:
        images: ``(B, C, H, W)`` float images.
        mask: ``(B,)`` bool.
        fn: Called as ``fn(subset, rows)`` with the ``(n, C, H, W)`` selected images and their
            ``(n,)`` row numbers (to index per-sample parameters); returns ``(n, C, H, W)``.

    Returns:
        ``(B, C, H, W)`` images; a new tensor when any sample was selected.
    """
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        return images
    if rows.size == len(mask):
        return fn(images, rows)
    index = torch.from_numpy(rows).to(images.device)
    out = images.clone()
    out[index] = fn(images[index], rows).to(out.dtype)
    return out


def apply_by_group(
    images: torch.Tensor,
    group: np.ndarray,
    fn: Callable[[int, torch.Tensor, np.ndarray], torch.Tensor],
) -> torch.Tensor:
    """Apply a different function to each group of samples (one pass, one output allocation).

    Args:
        images: ``(B, C, H, W)`` float images.
        group: ``(B,)`` int group label of each sample.
        fn: Called as ``fn(label, subset, rows)`` for every label present, with the
            ``(n, C, H, W)`` images of that group and their ``(n,)`` row numbers; returns
            ``(n, C, H, W)``.

    Returns:
        ``(B, C, H, W)`` images, each sample processed by its group's call.
    """
    labels = np.unique(group)
    if len(labels) == 1:
        return fn(int(labels[0]), images, np.arange(len(group)))
    out = torch.empty_like(images)
    for label in labels:
        rows = np.flatnonzero(group == label)
        index = torch.from_numpy(rows).to(images.device)
        out[index] = fn(int(label), images[index], rows).to(out.dtype)
    return out


@dataclass(frozen=True)
class Compose:
    """Apply random operations in sequence, each reading its own block of uniform columns.

    Columns are handed out in list order: operation ``k`` reads the ``num_uniforms`` columns
    after those of operations ``0 .. k-1``. Appending an operation therefore never changes the
    parameters of the ones before it.

    Args:
        ops: The operations, applied first to last.
    """

    ops: Sequence[RandomOp] = ()

    @property
    def num_uniforms(self) -> int:
        """Total columns of ``u`` the sequence reads."""
        return sum(op.num_uniforms for op in self.ops)

    def __call__(self, images: torch.Tensor, u: np.ndarray) -> torch.Tensor:
        """Apply every operation.

        Args:
            images: ``(B, C, H, W)``; uint8 in [0, 255] or float in [0, 1]; C in {1, 3, 4}.
            u: ``(B, num_uniforms) float64`` uniforms in [0, 1).

        Returns:
            ``(B, C, H', W') float32`` images in [0, 1].

        Raises:
            ValueError: Bad image shape, or ``u`` has too few columns.
        """
        x = as_float_images(images)
        check_images(x)
        check_uniforms(u, x.shape[0], self.num_uniforms, "Compose")
        start = 0
        for op in self.ops:
            n = op.num_uniforms
            x = op(x, u[:, start : start + n])
            start += n
        return x
