"""Shared step of the sampled policies: one randomly chosen operation per sample."""

from __future__ import annotations

import numpy as np
import torch

from ssl_data.policies.augment_ops import apply_op
from ssl_data.transforms.compose import apply_by_group


def apply_chosen_ops(
    images: torch.Tensor, ops: tuple[str, ...], choice: np.ndarray, magnitude: np.ndarray
) -> torch.Tensor:
    """Apply ``ops[choice[i]]`` with ``magnitude[i]`` to image ``i``, grouping equal choices.

    Args:
        images: ``(B, C, H, W)`` float in [0, 1].
        ops: Operation names.
        choice: ``(B,)`` int indices into ``ops``.
        magnitude: ``(B,)`` magnitudes (signed where the operation is symmetric).

    Returns:
        ``(B, C, H, W)`` float in [0, 1].
    """

    def run(k: int, subset: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        return apply_op(ops[k], subset, magnitude[rows])

    return apply_by_group(images, choice, run)
