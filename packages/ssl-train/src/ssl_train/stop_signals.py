"""SIGINT/SIGTERM as a request to stop after the current step (with a checkpoint)."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any


class StopSignals:
    """While active, the first SIGINT or SIGTERM only records its name; a second one raises
    :class:`KeyboardInterrupt` at once (the previous handlers are back by then).

    Handlers can only be installed from the main thread; elsewhere (a trainer run from a
    worker thread) this is a no-op and :attr:`received` stays None.

    Attributes:
        received: ``"SIGINT"`` or ``"SIGTERM"`` once one arrived, else None.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            self._restore()
            raise KeyboardInterrupt(f"second {name}: stopping without a checkpoint")
        self.received = name

    def _restore(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}

    def __enter__(self) -> StopSignals:
        self.received = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._restore()
