"""Affine warps (rotation, shift, shear, zoom) with Keras ImageDataGenerator fill modes.

Coordinates are pixel centres ``(row, col)``, row 0 at the top. A warp is a ``(2, 3)`` matrix
``M`` that maps each output pixel to the input position it samples:
``(row_in, col_in) = M @ (row_out, col_out, 1)``; sampling is bilinear (Keras' default order 1).
Positions outside the image are filled by ``fill_mode``:

- ``"nearest"``: the closest edge pixel (``aaaa|abcd|dddd``),
- ``"reflect"``: mirrored about the image edge (``dcba|abcd|dcba``, scipy's ``reflect``),
- ``"constant"``: the value ``cval``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ssl_data.transforms.compose import check_uniforms
from ssl_data.transforms.normalize import as_float_images

FILL_MODES = ("nearest", "constant", "reflect")
_PADDING = {"nearest": "border", "reflect": "reflection", "constant": "zeros"}


def check_fill_mode(fill_mode: str) -> None:
    """Raise ``ValueError`` unless ``fill_mode`` is one of :data:`FILL_MODES`."""
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")


def affine_matrices(
    height: int,
    width: int,
    angle: np.ndarray,
    shift: np.ndarray | None = None,
    shear: np.ndarray | None = None,
    zoom: np.ndarray | None = None,
) -> np.ndarray:
    """Per-sample warps about the image centre, composed as Keras does: rotation, shift, shear,
    zoom.

    With ``p`` the output position relative to the centre ``((H - 1) / 2, (W - 1) / 2)``, the
    input position is ``R @ (T(Sh @ Z @ p))``:

    - ``Z = diag(zoom_row, zoom_col)``: a zoom below 1 magnifies the content (Keras' rule);
    - ``Sh = [[1, -sin(s)], [0, cos(s)]]`` for a shear angle ``s`` (Keras' matrix);
    - ``T(q) = q - shift``: content moves by ``+shift`` pixels (down, right);
    - ``R = [[cos a, sin a], [-sin a, cos a]]``: content turns counter-clockwise by ``a`` as
      displayed (90 degrees equals ``np.rot90(image)``).

    Args:
        height: Image height in pixels.
        width: Image width in pixels.
        angle: ``(B,)`` rotation angles in degrees.
        shift: ``(B, 2)`` shifts ``(rows, cols)`` in pixels; default none.
        shear: ``(B,)`` shear angles in degrees; default none.
        zoom: ``(B, 2)`` zoom factors ``(rows, cols)``; default 1.

    Returns:
        ``(B, 2, 3) float64`` matrices mapping output ``(row, col, 1)`` to input ``(row, col)``.

    Raises:
        ValueError: Arrays of inconsistent shapes.
    """
    angle = np.asarray(angle, dtype=np.float64).reshape(-1)
    b = len(angle)
    shift = np.zeros((b, 2)) if shift is None else np.asarray(shift, dtype=np.float64)
    shear = np.zeros(b) if shear is None else np.asarray(shear, dtype=np.float64)
    zoom = np.ones((b, 2)) if zoom is None else np.asarray(zoom, dtype=np.float64)
    if shift.shape != (b, 2) or shear.shape != (b,) or zoom.shape != (b, 2):
        raise ValueError(
            f"angle ({b},), shift ({b}, 2), shear ({b},), zoom ({b}, 2) expected; got "
            f"{shift.shape}, {shear.shape}, {zoom.shape}"
        )
    a, s = np.deg2rad(angle), np.deg2rad(shear)
    rot = np.stack([np.cos(a), np.sin(a), -np.sin(a), np.cos(a)], 1).reshape(b, 2, 2)
    shr = np.stack([np.ones(b), -np.sin(s), np.zeros(b), np.cos(s)], 1).reshape(b, 2, 2)
    lin = rot @ shr @ (zoom[:, :, None] * np.eye(2))
    centre = np.array([(height - 1) / 2, (width - 1) / 2])
    # in = R (Sh Z (out - c) - shift) + c
    offset = centre - lin @ centre - (rot @ shift[:, :, None])[:, :, 0]
    return np.concatenate([lin, offset[:, :, None]], axis=2)


def warp_affine(
    images: torch.Tensor,
    matrices: np.ndarray,
    fill_mode: str = "nearest",
    cval: float = 0.0,
) -> torch.Tensor:
    """Warp each image by its matrix (bilinear), filling outside positions by ``fill_mode``.

    All channels move together (alpha included); ``cval`` fills every channel.

    Args:
        images: ``(B, C, H, W)`` float images.
        matrices: ``(B, 2, 3)`` output-to-input pixel maps (see :func:`affine_matrices`).
        fill_mode: ``"nearest"``, ``"constant"`` or ``"reflect"``.
        cval: Fill value for ``"constant"`` (in the images' range, e.g. [0, 1]).

    Returns:
        ``(B, C, H, W)`` float images.

    Raises:
        ValueError: Unknown ``fill_mode`` or matrices of the wrong shape.
    """
    check_fill_mode(fill_mode)
    b, _, h, w = images.shape
    if matrices.shape != (b, 2, 3):
        raise ValueError(f"matrices must be ({b}, 2, 3), got {matrices.shape}")
    dev, dt = images.device, images.dtype
    m = torch.as_tensor(matrices, dtype=torch.float64, device=dev)
    rows = torch.arange(h, dtype=torch.float64, device=dev).view(h, 1).expand(h, w)
    cols = torch.arange(w, dtype=torch.float64, device=dev).view(1, w).expand(h, w)
    base = torch.stack([rows, cols, torch.ones_like(rows)], dim=-1)  # (H, W, 3)
    src = torch.einsum("bij,hwj->bhwi", m, base)  # (B, H, W, 2) input (row, col)
    # grid_sample wants (x, y) in [-1, 1] with pixel centres at (2 i + 1) / n - 1.
    grid = torch.stack([(2 * src[..., 1] + 1) / w - 1, (2 * src[..., 0] + 1) / h - 1], dim=-1)
    grid = grid.to(dt)
    out = F.grid_sample(
        images, grid, mode="bilinear", padding_mode=_PADDING[fill_mode], align_corners=False
    )
    if fill_mode == "constant" and cval != 0.0:
        inside = F.grid_sample(
            torch.ones_like(images[:, :1]),
            grid,
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )
        out = out + cval * (1 - inside)
    return out


@dataclass(frozen=True)
class RandomAffine:
    """Keras ImageDataGenerator's random affine transform, per sample (six uniforms).

    Per sample: angle uniform in ``[-rotation_range, rotation_range]`` degrees, shifts uniform in
    ``[-height_shift_range, height_shift_range] * H`` rows and ``[-width_shift_range,
    width_shift_range] * W`` columns, shear uniform in ``[-shear_range, shear_range]`` degrees, and
    zoom factors for rows and columns drawn independently from ``zoom_range``; composed as in
    :func:`affine_matrices` and sampled as in :func:`warp_affine`.

    Args:
        rotation_range: Maximum rotation in degrees.
        width_shift_range: Maximum horizontal shift, as a fraction of the width.
        height_shift_range: Maximum vertical shift, as a fraction of the height.
        shear_range: Maximum shear angle in degrees.
        zoom_range: ``(low, high)`` zoom factors, or ``z`` for ``[1 - z, 1 + z]``; below 1 zooms in.
        fill_mode: ``"nearest"`` (Keras' default), ``"constant"`` or ``"reflect"``.
        cval: Fill value in [0, 1] for ``"constant"``.

    Raises:
        ValueError: A negative range, a non-positive zoom or an unknown fill mode.

    Reference: Keras ``ImageDataGenerator`` (Chollet et al., 2015), ``apply_affine_transform``.
    """

    rotation_range: float = 0.0
    width_shift_range: float = 0.0
    height_shift_range: float = 0.0
    shear_range: float = 0.0
    zoom_range: float | tuple[float, float] = 0.0
    fill_mode: str = "nearest"
    cval: float = 0.0

    def __post_init__(self) -> None:
        check_fill_mode(self.fill_mode)
        for name in ("rotation_range", "width_shift_range", "height_shift_range", "shear_range"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        lo, hi = self.zoom_bounds
        if not 0 < lo <= hi:
            raise ValueError(f"zoom_range must give 0 < low <= high, got {self.zoom_range}")

    @property
    def zoom_bounds(self) -> tuple[float, float]:
        """``(low, high)`` zoom factors."""
        z = self.zoom_range
        return (1 - z, 1 + z) if isinstance(z, (int, float)) else (float(z[0]), float(z[1]))

    @property
    def num_uniforms(self) -> int:
        """Six: angle, row shift, column shift, shear, row zoom, column zoom."""
        return 6

    def matrices(self, u: np.ndarray, height: int, width: int) -> np.ndarray:
        """The ``(B, 2, 3)`` warps (see :func:`affine_matrices`) that ``u`` selects."""
        sym = 2 * u - 1  # uniform in [-1, 1)
        lo, hi = self.zoom_bounds
        shift = np.stack(
            [
                sym[:, 1] * self.height_shift_range * height,
                sym[:, 2] * self.width_shift_range * width,
            ],
            axis=1,
        )
        zoom = lo + (hi - lo) * u[:, 4:6]
        return affine_matrices(
            height,
            width,
            sym[:, 0] * self.rotation_range,
            shift,
            sym[:, 3] * self.shear_range,
            zoom,
        )

    def __call__(self, images: torch.Tensor, u: np.ndarray) -> torch.Tensor:
        """Warp ``(B, C, H, W)`` images; returns float32."""
        x = as_float_images(images)
        check_uniforms(u, x.shape[0], 6, "RandomAffine")
        m = self.matrices(u, x.shape[2], x.shape[3])
        return warp_affine(x, m, self.fill_mode, self.cval)
