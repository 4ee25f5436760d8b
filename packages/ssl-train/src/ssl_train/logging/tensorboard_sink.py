"""TensorBoard event files through ``torch.utils.tensorboard`` (the ``tensorboard`` package)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

EVAL_KEYS = frozenset({"knn_top1", "collapse_std", "collapse_std_reference"})


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def scalar_tag(key: str) -> str:
    """TensorBoard/MLflow name of a ``metrics.jsonl`` key: ``eval/knn_top1``, ``train/loss``."""
    return f"{'eval' if key in EVAL_KEYS else 'train'}/{key}"


class TensorBoardSink:
    """Writes every numeric value of a row as a scalar ``train/<key>`` or ``eval/<key>``.

    Args:
        log_dir: Folder for the event files (``<run>/tensorboard``).
        resume_step: When resuming from a checkpoint at this step, TensorBoard's ``purge_step``
            hides the events of later steps that the interrupted run wrote.
        recipe_yaml: Shown as text under ``recipe``.
    """

    def __init__(
        self, log_dir: str | Path, resume_step: int | None = None, recipe_yaml: str | None = None
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        purge = resume_step + 1 if resume_step is not None else None
        self._writer = SummaryWriter(str(log_dir), purge_step=purge, flush_secs=30)
        if recipe_yaml is not None and resume_step is None:
            self._writer.add_text("recipe", f"```yaml\n{recipe_yaml}\n```", 0)

    def log(self, step: int, row: dict[str, Any]) -> None:
        """Add the row's finite numeric values at ``step``."""
        for key, value in row.items():
            if _is_finite_number(value):
                self._writer.add_scalar(scalar_tag(key), value, step)

    def flush(self) -> None:
        """Write pending events to disk."""
        self._writer.flush()

    def close(self, status: str = "FINISHED") -> None:
        """Flush and close the event file."""
        self._writer.close()
