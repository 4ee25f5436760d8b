"""Early stopping of pretraining on an online-evaluation metric, with patience."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

#: Direction of improvement of each metric the trainer can monitor.
MODES = {"knn_top1": "max", "val_top1": "max", "collapse_std": "max", "loss": "min"}


@dataclass
class EarlyStopping:
    """Stops after ``patience`` evaluations in a row without an improvement of ``min_delta``.

    Args:
        monitor: ``knn_top1`` or ``collapse_std`` (higher is better) or ``loss`` (lower).
        patience: Evaluations without improvement that stop the run; None never stops.
        min_delta: Smallest change over the best value that counts as an improvement (>= 0).

    Raises:
        ValueError: Unknown ``monitor``, ``patience`` < 1 or ``min_delta`` < 0.
    """

    monitor: str = "knn_top1"
    patience: int | None = None
    min_delta: float = 0.0
    best: float | None = None
    best_step: int | None = None
    bad_evaluations: int = 0

    def __post_init__(self) -> None:
        if self.monitor not in MODES:
            raise ValueError(f"monitor must be one of {sorted(MODES)}, got {self.monitor!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        if self.min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta}")

    def update(self, value: float, step: int) -> bool:
        """Record one evaluation; True when the run should stop now.

        A non-finite value never improves (a diverged loss counts against patience).
        """
        sign = 1.0 if MODES[self.monitor] == "max" else -1.0
        improved = math.isfinite(value) and (
            self.best is None or sign * (value - self.best) > self.min_delta
        )
        if improved:
            self.best, self.best_step, self.bad_evaluations = value, step, 0
        else:
            self.bad_evaluations += 1
        return self.patience is not None and self.bad_evaluations >= self.patience

    def reason(self) -> str:
        """Why the run stopped, for the summary and the log."""
        return (
            f"early stopping: {self.monitor} did not improve by more than {self.min_delta} in "
            f"{self.bad_evaluations} evaluations (best {self.best} at step {self.best_step})"
        )

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` output (the configuration stays this object's)."""
        self.best = state.get("best")
        self.best_step = state.get("best_step")
        self.bad_evaluations = int(state.get("bad_evaluations", 0))
