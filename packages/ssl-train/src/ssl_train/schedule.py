"""Learning-rate schedule as a pure function of the optimiser step."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


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


@dataclass(frozen=True)
class WarmupCosine:
    """:func:`warmup_cosine` bound to one run: the learning-rate scheduler of the trainer.

    The rate is a pure function of the optimiser step, so the scheduler's whole state is its
    arguments; a checkpoint stores them and a resume checks that they agree.

    Attributes:
        total_steps: Optimiser steps in the run.
        peak_lr: Learning rate at the end of warm-up.
        warmup_steps: Linear warm-up length in steps.
        final_lr_ratio: End of the cosine as a fraction of ``peak_lr``.
    """

    total_steps: int
    peak_lr: float
    warmup_steps: int
    final_lr_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        """The learning rate of 0-based optimiser step ``step``."""
        return warmup_cosine(
            step, self.total_steps, self.peak_lr, self.warmup_steps, self.final_lr_ratio
        )

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (the arguments and the schedule's name)."""
        return {"name": "warmup_cosine", **asdict(self)}

    def mismatch(self, saved: dict[str, Any]) -> str | None:
        """How a saved :meth:`state_dict` differs from this schedule (None when it agrees)."""
        mine = self.state_dict()
        diffs = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in mine.items() if saved.get(k) != v]
        return ", ".join(diffs) or None
