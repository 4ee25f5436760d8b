"""Random rotation by an arbitrary angle (a special case of the affine warp)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.transforms.affine import affine_matrices, check_fill_mode, warp_affine
from ssl_data.transforms.compose import check_uniforms
from ssl_data.transforms.normalize import as_float_images


def rotate(
    images: torch.Tensor, angle: np.ndarray, fill_mode: str = "constant", cval: float = 0.0
) -> torch.Tensor:
    """Rotate each image counter-clockwise (as displayed) about its centre by ``angle`` degrees.

    Args:
        images: ``(B, C, H, W)`` float images.
        angle: ``(B,)`` angles in degrees.
        fill_mode: ``"nearest"``, ``"constant"`` or ``"reflect"`` (see :mod:`.affine`).
        cval: Fill value for ``"constant"``.

    Returns:
        ``(B, C, H, W)`` float images.

    Raises:
        ValueError: Unknown ``fill_mode`` or ``angle`` of the wrong length.
    """
    b, _, h, w = images.shape
    a = np.asarray(angle, dtype=np.float64)
    if a.shape != (b,):
        raise ValueError(f"angle must be ({b},), got {a.shape}")
    return warp_affine(images, affine_matrices(h, w, a), fill_mode, cval)


@dataclass(frozen=True)
class RandomRotation:
    """Rotate each sample by an angle uniform in ``degrees`` (one uniform per sample).

    Args:
        degrees: ``(low, high)`` angles in degrees, or ``d`` for ``[-d, d]``.
        fill_mode: ``"nearest"``, ``"constant"`` (torchvision's default, black) or ``"reflect"``.
        cval: Fill value in [0, 1] for ``"constant"``.

    Raises:
        ValueError: An empty range or an unknown fill mode.
    """

    degrees: float | tuple[float, float] = 30.0
    fill_mode: str = "constant"
    cval: float = 0.0

    def __post_init__(self) -> None:
        check_fill_mode(self.fill_mode)
        lo, hi = self.bounds
        if lo > hi:
            raise ValueError(f"degrees must be a range low <= high, got {self.degrees}")

    @property
    def bounds(self) -> tuple[float, float]:
        """``(low, high)`` in degrees."""
        d = self.degrees
        return (-abs(d), abs(d)) if isinstance(d, (int, float)) else (float(d[0]), float(d[1]))

    @property
    def num_uniforms(self) -> int:
        """One: the angle."""
        return 1

    def __call__(self, images: torch.Tensor, u: np.ndarray) -> torch.Tensor:
        """Rotate ``(B, C, H, W)`` images; returns float32."""
        x = as_float_images(images)
        check_uniforms(u, x.shape[0], 1, "RandomRotation")
        lo, hi = self.bounds
        return rotate(x, lo + (hi - lo) * u[:, 0], self.fill_mode, self.cval)
