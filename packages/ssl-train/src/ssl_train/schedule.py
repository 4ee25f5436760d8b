"""Learning-rate schedule as a pure function of the optimiser step."""

from __future__ import annotations

import math


def warmup_cosine(
    step: int, total_steps: int, peak_lr: float, warmup_steps: int, final_lr_ratio: float = 0.0
) -> float:
    """Linear warm-up to ``peak_lr`` then cosine decay to ``peak_lr * final_lr_ratio``.

    The first step's rate is ``peak_lr / warmup_steps`` (> 0) and the peak is reached on the last
    warm-up step.

    Args:
        step: 0-based optimiser step.
        total_steps: Steps in the run (>= 1).
        peak_lr: Learning rate at the end of warm-up.
        warmup_steps: Length of the warm-up in steps.
        final_lr_ratio: End of the cosine as a fraction of ``peak_lr``.

    Returns:
        The learning rate for ``step``.

    Reference: Loshchilov & Hutter, "SGDR", arXiv:1608.03983; Goyal et al., arXiv:1706.02677.
    """
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    floor = peak_lr * final_lr_ratio
    return floor + (peak_lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
