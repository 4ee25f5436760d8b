"""``metrics.jsonl``: one JSON object per logged step, the run's own record of its metrics."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import IO, Any

from ssl_train.errors import SslTrainError

METRICS_FILE = "metrics.jsonl"


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file, in file order (empty when it does not exist).

    A last line cut short by a crash is ignored; any other bad line is an error.

    Raises:
        SslTrainError: A line other than the last is not a JSON object (names file and line).
    """
    p = Path(path)
    if not p.is_file():
        return []
    lines = p.read_text().splitlines()
    rows: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:
                break  # the writer was killed mid-line
            raise SslTrainError(f"{p}:{i + 1}: not a JSON object ({err})") from None
        if not isinstance(row, dict):
            raise SslTrainError(f"{p}:{i + 1}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


class JsonlSink:
    """Appends rows to ``metrics.jsonl``; each row is flushed, so a crash loses none.

    Non-finite values are written as ``null`` (strict JSON), so a skipped step's NaN loss
    reads back as None.

    Args:
        path: The file (created; appended to when it exists).
        resume_step: When resuming from a checkpoint at this step, rows of later steps (written
            after that checkpoint by the interrupted run) are dropped first, so every step
            appears once.
    """

    def __init__(self, path: str | Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        if resume_step is not None and self.path.exists():
            keep = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= resume_step]
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
            os.replace(tmp, self.path)
        self._file: IO[str] | None = self.path.open("a")

    def log(self, step: int, row: dict[str, Any]) -> None:
        """Write one row (``step`` first)."""
        if self._file is None:
            raise SslTrainError(f"{self.path} is closed")
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in row.items()
        }
        self._file.write(json.dumps({"step": step, **clean}) + "\n")
        self._file.flush()

    def flush(self) -> None:
        """Rows are flushed as written; kept for the sink interface."""
        if self._file is not None:
            self._file.flush()

    def close(self, status: str = "FINISHED") -> None:
        """Close the file (``status`` is ignored; kept for the sink interface)."""
        if self._file is not None:
            self._file.close()
            self._file = None
