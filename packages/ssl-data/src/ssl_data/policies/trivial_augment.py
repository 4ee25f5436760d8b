"""TrivialAugment (Müller and Hutter, 2021, arXiv:2103.10719): one op, a uniform magnitude."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.policies._sampling import apply_chosen_ops
from ssl_data.policies.augment_ops import AUGMENT_OPS, OP_NAMES, check_op_names, magnitude_table
from ssl_data.transforms.compose import check_uniforms
from ssl_data.transforms.normalize import as_float_images


@dataclass(frozen=True)
class TrivialAugment:
    """Apply one operation drawn uniformly from ``ops`` at a magnitude bin drawn uniformly.

    Reads three uniforms per sample: operation, magnitude bin, sign. Magnitudes come from the
    wide tables of TrivialAugment (``TrivialAugmentWide`` in torchvision: Rotate 0..135 degrees,
    Translate 0..32 pixels, ...). Usable as the ``policy`` of any view generator.

    Args:
        num_magnitude_bins: Number of magnitude bins (31 as in the paper).
        ops: Names of the operations to draw from (default all of
            :data:`ssl_data.policies.augment_ops.OP_NAMES`).

    Raises:
        ValueError: Fewer than 2 bins or an unknown op name.

    Reference: Müller and Hutter, "TrivialAugment: Tuning-free Yet State-of-the-Art Data
    Augmentation", arXiv:2103.10719.
    """

    num_magnitude_bins: int = 31
    ops: tuple[str, ...] = OP_NAMES

    def __post_init__(self) -> None:
        if self.num_magnitude_bins < 2:
            raise ValueError(f"num_magnitude_bins must be >= 2, got {self.num_magnitude_bins}")
        check_op_names(tuple(self.ops))

    @property
    def num_uniforms(self) -> int:
        """Three: operation, magnitude bin, sign."""
        return 3

    def __call__(self, images: torch.Tensor, u: np.ndarray) -> torch.Tensor:
        """Augment ``(B, C, H, W)`` images (uint8 or float in [0, 1]); returns float32."""
        x = as_float_images(images)
        check_uniforms(u, x.shape[0], 3, "TrivialAugment")
        ops = tuple(self.ops)
        n = self.num_magnitude_bins
        h, w = x.shape[2], x.shape[3]
        choice = np.minimum((u[:, 0] * len(ops)).astype(np.int64), len(ops) - 1)
        bins = np.minimum((u[:, 1] * n).astype(np.int64), n - 1)
        tables = np.stack([magnitude_table(o, n, h, w, True) for o in ops])  # (ops, bins)
        signed = np.array([AUGMENT_OPS[o][1] for o in ops])
        sign = np.where(signed[choice] & (u[:, 2] < 0.5), -1.0, 1.0)
        return apply_chosen_ops(x, ops, choice, sign * tables[choice, bins])
