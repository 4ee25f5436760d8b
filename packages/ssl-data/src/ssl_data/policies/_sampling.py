"""Shared step of the sampled policies: one randomly chosen operation per sample."""

from __future__ import annotations

import numpy as np
import torch

from ssl_data.policies.augment_ops import apply_op
from ssl_data.transforms.compose import apply_where


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
    x = images
    for k, name in enumerate(ops):
        x = apply_where(
            x, choice == k, lambda s, rows, name=name: apply_op(name, s, magnitude[rows])
        )
    return x
