"""RandAugment (Cubuk et al., 2020, arXiv:1909.13719): N random operations at magnitude M."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.policies._sampling import apply_chosen_ops
from ssl_data.policies.augment_ops import AUGMENT_OPS, OP_NAMES, check_op_names, magnitude_table
from ssl_data.transforms.compose import check_uniforms
from ssl_data.transforms.normalize import as_float_images


@dataclass(frozen=True)
class RandAugment:
    """Apply ``num_ops`` operations, each drawn uniformly from ``ops``, at one magnitude bin.

    Per sample and per step, one uniform picks the operation and one its sign (symmetric
    operations are negated with probability 1/2), so it reads ``2 * num_ops`` uniforms. The
    magnitude of an operation is ``magnitude_table(op)[magnitude]`` (torchvision's tables, e.g.
    Rotate 0..30 degrees over 31 bins). Usable as the ``policy`` of any view generator.

    Args:
        num_ops: N, the number of operations applied in sequence.
        magnitude: M, the magnitude bin in ``[0, num_magnitude_bins)``.
        num_magnitude_bins: Number of magnitude bins.
        ops: Names of the operations to draw from (default all of
            :data:`ssl_data.policies.augment_ops.OP_NAMES`).

    Raises:
        ValueError: ``num_ops`` < 1, ``magnitude`` outside the bins, or an unknown op name.

    Reference: Cubuk et al., "RandAugment: Practical automated data augmentation with a reduced
    search space", arXiv:1909.13719.
    """

    num_ops: int = 2
    magnitude: int = 9
    num_magnitude_bins: int = 31
    ops: tuple[str, ...] = OP_NAMES

    def __post_init__(self) -> None:
        if self.num_ops < 1:
            raise ValueError(f"num_ops must be >= 1, got {self.num_ops}")
        if not 0 <= self.magnitude < self.num_magnitude_bins:
            raise ValueError(
                f"magnitude must be in [0, {self.num_magnitude_bins}), got {self.magnitude}"
            )
        check_op_names(tuple(self.ops))

    @property
    def num_uniforms(self) -> int:
        """``2 * num_ops``: (operation, sign) per step."""
        return 2 * self.num_ops

    def __call__(self, images: torch.Tensor, u: np.ndarray) -> torch.Tensor:
        """Augment ``(B, C, H, W)`` images (uint8 or float in [0, 1]); returns float32."""
        x = as_float_images(images)
        check_uniforms(u, x.shape[0], self.num_uniforms, "RandAugment")
        ops = tuple(self.ops)
        h, w = x.shape[2], x.shape[3]
        for step in range(self.num_ops):
            choice = np.minimum((u[:, 2 * step] * len(ops)).astype(np.int64), len(ops) - 1)
            mags = np.array(
                [
                    magnitude_table(o, self.num_magnitude_bins, h, w, False)[self.magnitude]
                    for o in ops
                ]
            )
            signed = np.array([AUGMENT_OPS[o][1] for o in ops])
            sign = np.where(signed[choice] & (u[:, 2 * step + 1] < 0.5), -1.0, 1.0)
            x = apply_chosen_ops(x, ops, choice, sign * mags[choice])
        return x
