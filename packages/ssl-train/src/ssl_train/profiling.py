"""Profiling a few training steps: a torch.profiler trace and where the step time goes."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import torch

PHASES = ("data", "forward", "backward", "optimizer")


class StepProfiler:
    """Records optimiser steps ``skip + 1`` to ``skip + steps`` of a run with ``torch.profiler``.

    The trainer marks the four phases of a step with :meth:`phase` (``data``: building the
    batch and its views; ``forward``; ``backward``; ``optimizer``: clipping, the optimiser and
    scaler step, EMA updates). While recording, each phase is a ``record_function`` range in the
    trace and is also timed with a wall clock (after a CUDA synchronise on GPUs, so the time is
    the phase's, not its launch's). When the last recorded step ends, the trace is written as a
    Chrome/Perfetto trace (``trace.json``, open it at https://ui.perfetto.dev or in
    ``chrome://tracing``) and as TensorBoard profiler files (``tensorboard/``), and
    ``summary.json`` holds milliseconds per step and the share of each phase.

    Args:
        output: Folder for the trace and the summary (created).
        steps: Optimiser steps to record (>= 1).
        skip: Steps to let pass first (start-up, allocator warm-up; >= 0).
        device: The training device (CUDA phases are synchronised).

    Raises:
        ValueError: ``steps < 1`` or ``skip < 0``.
    """

    def __init__(self, output: Path, steps: int, skip: int = 1, device: str = "cpu") -> None:
        if steps < 1 or skip < 0:
            raise ValueError(f"need steps >= 1 and skip >= 0, got steps={steps}, skip={skip}")
        self.output, self.steps, self.skip = Path(output), steps, skip
        self.cuda = device.startswith("cuda")
        self.seen = 0
        self.totals = dict.fromkeys(PHASES, 0.0)
        self.summary: dict[str, object] | None = None
        self._profile: torch.profiler.profile | None = None

    @property
    def recording(self) -> bool:
        """Whether the current step is being recorded."""
        return self._profile is not None

    def begin_step(self) -> None:
        """Call before each optimiser step; starts the recording at step ``skip + 1``."""
        if self.seen == self.skip and self.summary is None:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.cuda:
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self._profile = torch.profiler.profile(activities=activities, record_shapes=False)
            self._profile.__enter__()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Mark one phase of the current step (a no-op when not recording)."""
        if self._profile is None:
            yield
            return
        if self.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.profiler.record_function(name):
            yield
            if self.cuda:
                torch.cuda.synchronize()
        self.totals[name] += time.perf_counter() - t0

    def end_step(self) -> dict[str, object] | None:
        """Call after each optimiser step; returns the summary once the recording is complete."""
        self.seen += 1
        if self._profile is None or self.seen < self.skip + self.steps:
            return None
        self._profile.__exit__(None, None, None)
        tb = self.output / "tensorboard"
        tb.mkdir(parents=True, exist_ok=True)
        # A trace can be exported once: TensorBoard's handler writes it, trace.json is a copy.
        torch.profiler.tensorboard_trace_handler(str(tb), worker_name="trainer")(self._profile)
        self._profile = None
        written = max(tb.glob("trainer*.pt.trace.json"), key=lambda p: p.stat().st_mtime)
        shutil.copyfile(written, self.output / "trace.json")
        ms = {k: 1000 * v / self.steps for k, v in self.totals.items()}
        total = sum(ms.values())
        self.summary = {
            "steps": self.steps,
            "first_step": self.skip + 1,
            "ms_per_step": {k: round(v, 3) for k, v in ms.items()},
            "share": {k: round(v / total, 4) if total else 0.0 for k, v in ms.items()},
            "trace": str(self.output / "trace.json"),
            "tensorboard": str(tb),
        }
        (self.output / "summary.json").write_text(json.dumps(self.summary, indent=2) + "\n")
        return self.summary


def format_summary(summary: dict[str, object]) -> str:
    """One line per phase, e.g. ``forward  12.3 ms  41%``, for the log."""
    ms = summary["ms_per_step"]
    share = summary["share"]
    assert isinstance(ms, dict) and isinstance(share, dict)
    rows = [f"  {k:<10}{ms[k]:>9.2f} ms {100 * share[k]:>5.1f}%" for k in PHASES]
    head = (
        f"profile of steps {summary['first_step']}..{summary['first_step'] + summary['steps'] - 1}"  # type: ignore[operator]
    )
    return "\n".join([head + f" (trace: {summary['trace']})", *rows])
