"""One call logs a row of metrics to every configured sink (JSON lines, TensorBoard, MLflow)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class MetricSink(Protocol):
    """Where rows of metrics go; the trainer calls these on rank 0 only."""

    def log(self, step: int, row: dict[str, Any]) -> None:
        """Record ``row`` (name -> value) at optimiser step ``step``."""

    def flush(self) -> None:
        """Make everything logged so far durable (called at each checkpoint)."""

    def close(self, status: str = "FINISHED") -> None:
        """Flush and release; ``status`` is FINISHED, KILLED or FAILED."""


class MetricLogger:
    """Fans each row out to its sinks, in order.

    Args:
        sinks: The sinks (may be empty: then every call is a no-op, as on ranks other than 0).
    """

    def __init__(self, sinks: Sequence[MetricSink] = ()) -> None:
        self.sinks = list(sinks)

    def log(self, step: int, row: dict[str, Any]) -> None:
        """Send one row to every sink."""
        for s in self.sinks:
            s.log(step, row)

    def flush(self) -> None:
        """Flush every sink."""
        for s in self.sinks:
            s.flush()

    def close(self, status: str = "FINISHED") -> None:
        """Close every sink (each is closed even if another raises)."""
        errors = []
        for s in self.sinks:
            try:
                s.close(status)
            except Exception as err:  # close the others, then re-raise the first
                errors.append(err)
        self.sinks = []
        if errors:
            raise errors[0]
