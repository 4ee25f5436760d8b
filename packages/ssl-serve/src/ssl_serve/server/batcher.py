"""Dynamic batching across requests: one queue and one scheduler thread per model version.

RPC handler threads decode or tokenise their request, put it in its model's queue and wait; the
model's scheduler thread takes the requests waiting there (first come, first served) and runs
them as one onnxruntime batch of at most ``max_batch_size`` inputs (text: and
``max_batch_tokens`` real tokens), then hands each request its own rows. A request larger than
the limits runs alone, in chunks. Text rows and audio clips of all merged requests are sorted by
length and run in padded sub-batches (:func:`~ssl_serve.preprocess.text.length_sorted_batches`;
audio: at most ``max_batch_seconds`` of padded audio per run), so a short text or clip never
pays for a long one from another client. Pooling uses the attention mask, so an input embeds the
same (within float32 rounding, tested at 1e-5) whatever it is batched with.

A batch forms when the model is free and takes the requests waiting by then, so under load
the requests that arrive while one batch runs form the next. The scheduler waits up to
``max_queue_delay_s`` for a batch to fill, but only while more requests for the model have
arrived and are still being decoded or tokenised: a lone request runs at once (on its own RPC
thread, when the model is idle and the queue empty), so a single client pays no delay.
Requests whose deadline has passed or whose client has gone are dropped before they run; a
full queue (``max_queue_size`` requests) refuses new ones with RESOURCE_EXHAUSTED.

A hot reload replaces a model version by another :class:`LoadedModel` with a batcher of its own;
the old batcher is *retired*: its scheduler runs what is queued, then exits, and a request that
resolved the old model just before the swap still runs on it, alone on its own thread, so no
request is stranded or fails because of the swap.

Reference: the dynamic batcher of NVIDIA Triton Inference Server (``max_queue_delay``,
``max_queue_size``) and the token-budget batching of Hugging Face text-embeddings-inference.
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ssl_serve.errors import (
    ModelNotReadyError,
    QueueFullError,
    RequestDeadlineError,
    RequestDroppedError,
)
from ssl_serve.preprocess.audio import DEFAULT_MAX_BATCH_SECONDS
from ssl_serve.preprocess.text import length_sorted_batches
from ssl_serve.server.metrics import ServerMetrics
from ssl_serve.server.models import InferenceResult, LoadedModel, ModelRegistry

log = logging.getLogger(__name__)

# grpc reports "no deadline" as a remaining time of about 2**63 s; anything past a day is none.
_NO_DEADLINE_S = 86400.0


class CallState(Protocol):
    """What the batcher reads of an RPC (``grpc.ServicerContext`` has both methods)."""

    def time_remaining(self) -> float | None:
        """Seconds until the call's deadline (None or huge: no deadline)."""
        ...

    def is_active(self) -> bool:
        """Whether the call is still alive (False once cancelled or past its deadline)."""
        ...


@dataclass(frozen=True)
class BatchingConfig:
    """Limits of the dynamic batcher (``ssl-serve serve`` flags of the same names).

    Attributes:
        max_batch_size: Most inputs merged into one batch (and per ``session.run``).
        max_batch_tokens: Text models: most real tokens merged into one batch, and most padded
            tokens (sequences x longest length) per ``session.run``.
        max_queue_delay_s: Longest wait, in seconds, for more requests to join a batch (only
            while more are being decoded/tokenised); 0 never waits.
        max_queue_size: Most requests waiting per model version; more get RESOURCE_EXHAUSTED.
        max_batch_seconds: Audio models: most padded audio per ``session.run``, in seconds
            (one clip always runs).

    Raises:
        ValueError: A limit is < 1, or the delay is negative.
    """

    max_batch_size: int = 256
    max_batch_tokens: int = 8192
    max_queue_delay_s: float = 0.002
    max_queue_size: int = 64
    max_batch_seconds: float = DEFAULT_MAX_BATCH_SECONDS

    def __post_init__(self) -> None:
        if min(self.max_batch_size, self.max_batch_tokens, self.max_queue_size) < 1:
            raise ValueError(
                f"max_batch_size ({self.max_batch_size}), max_batch_tokens "
                f"({self.max_batch_tokens}) and max_queue_size ({self.max_queue_size}) must "
                "be >= 1"
            )
        if not self.max_queue_delay_s >= 0:
            raise ValueError(f"max_queue_delay_s must be >= 0, got {self.max_queue_delay_s}")
        if not self.max_batch_seconds > 0:
            raise ValueError(f"max_batch_seconds must be > 0, got {self.max_batch_seconds}")


@dataclass(frozen=True)
class TextRows:
    """Token rows of one text request, each of its own length (no padding).

    Attributes:
        ids: N arrays ``(L_i,) int64`` of token ids, special tokens included.
        type_ids: N arrays ``(L_i,) int64``, or None for zeros.
        masks: N arrays ``(L_i,) int64`` (0/1) for rows with masked positions inside them, None
            entries (or None) where every position is a real token.
    """

    ids: Sequence[np.ndarray]
    type_ids: Sequence[np.ndarray] | None = None
    masks: Sequence[np.ndarray | None] | None = None

    @classmethod
    def from_padded(
        cls, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray | None
    ) -> TextRows:
        """Rows of a client-padded ``(B, L) int64`` batch, without their trailing padding.

        Each row keeps its positions up to its last real token (mask 1); positions masked
        inside that span keep their mask. Every row needs at least one real token.
        """
        ids, types, masks = [], [], []
        for r in range(len(input_ids)):
            end = int(np.flatnonzero(attention_mask[r])[-1]) + 1
            ids.append(input_ids[r, :end])
            mask = attention_mask[r, :end]
            masks.append(None if mask.all() else mask)
            if token_type_ids is not None:
                types.append(token_type_ids[r, :end])
        return cls(ids, types if token_type_ids is not None else None, masks)


@dataclass(eq=False)
class _Request:
    """One request in a queue, with the future its handler waits on."""

    method: str
    images: np.ndarray | None  # (N, C, H, W) float32, image models
    text: TextRows | None  # text models
    audio: Sequence[np.ndarray] | None  # audio models: (T_i,) float32 clips
    output_names: tuple[str, ...]
    inputs: int
    tokens: int
    deadline: float | None  # time.monotonic()
    is_active: Callable[[], bool]
    enqueued: float = field(default_factory=time.perf_counter)
    future: Future[tuple[dict[str, np.ndarray], InferenceResult]] = field(default_factory=Future)


class ModelBatcher:
    """The queue and scheduler thread of one model version.

    Args:
        model: The model version (loaded by the registry before requests arrive).
        config: The batching limits.
        metrics: Where batches and dropped requests are counted; None counts nothing.
    """

    def __init__(
        self, model: LoadedModel, config: BatchingConfig, metrics: ServerMetrics | None = None
    ) -> None:
        self.model = model
        self.config = config
        self.metrics = metrics
        self._queue: collections.deque[_Request] = collections.deque()
        self._cond = threading.Condition()
        self._arriving = 0  # requests decoding/tokenising before they join the queue
        self._running = 0  # batches running (on the scheduler or, alone, on an RPC thread)
        self._stopped = False
        self._retired = False  # replaced by a hot reload: queued requests run, new ones alone
        self._thread = threading.Thread(
            target=self._loop, name=f"batcher-{model.entry.name}-{model.entry.version}", daemon=True
        )

    @property
    def queue_depth(self) -> int:
        """Requests waiting in the queue (dropped ones included until the scheduler sees them)."""
        return len(self._queue)

    def start(self) -> None:
        """Start the scheduler thread."""
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the scheduler after the running batch; waiting requests fail with UNAVAILABLE."""
        with self._cond:
            self._stopped = True
            waiting = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for request in waiting:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(self._draining())
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def retire(self) -> None:
        """Let the scheduler run what is queued, then exit; later requests run alone.

        For a model version a hot reload replaced or removed: requests that resolved it before
        the swap still get their answers from it.
        """
        with self._cond:
            self._retired = True
            self._cond.notify_all()

    @property
    def idle(self) -> bool:
        """Whether no request is on its way, queued or running."""
        with self._cond:
            return not self._queue and self._arriving == 0 and self._running == 0

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until :attr:`idle`; returns False when ``timeout_s`` seconds passed first."""
        deadline = time.monotonic() + timeout_s
        while not self.idle:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    @contextmanager
    def arrival(self) -> Iterator[Arrival]:
        """Announce a request while it is decoded or tokenised; submit it with the result.

        While announced requests are on their way, the scheduler may wait (up to the queue
        delay) for them to join the next batch.
        """
        with self._cond:
            self._arriving += 1
        arrival = Arrival(self)
        try:
            yield arrival
        finally:
            if not arrival.submitted:
                with self._cond:
                    self._arriving -= 1
                    self._wake()

    def _submit(self, request: _Request, arrival: Arrival) -> None:
        """Run ``request`` (announced by ``arrival``) or queue it; refuse it with an error.

        A request that finds the model idle, the queue empty and no other request on its way
        would run alone after the queue delay anyway: it runs at once, on the caller's
        thread, which saves two thread switches per call for a lone client.
        """
        with self._cond:
            arrival.submitted = True
            self._arriving -= 1
            self._wake()  # the scheduler may be waiting for this arrival
            if self._stopped:
                raise self._draining()
            if not self.model.ready:
                raise ModelNotReadyError(f"model {self._name()} is still loading")
            if request.deadline is not None and time.monotonic() >= request.deadline:
                self._count_dropped("deadline")
                raise RequestDeadlineError(f"deadline passed before {self._name()} ran it")
            alone = self._retired or (
                not self._queue and self._arriving == 0 and self._running == 0
            )
            if alone:
                self._running += 1
            else:
                if len(self._queue) >= self.config.max_queue_size:
                    self._drop_dead()
                if len(self._queue) >= self.config.max_queue_size:
                    self._count_dropped("queue_full")
                    raise QueueFullError(
                        f"model {self._name()} has {len(self._queue)} requests queued, the most "
                        f"this server takes (--max-queue-size {self.config.max_queue_size}); "
                        "the server is overloaded: retry with backoff, or on another replica"
                    )
                self._queue.append(request)
                self._cond.notify_all()
        if alone:
            request.future.set_running_or_notify_cancel()
            self._run_and_release([request])

    def _wake(self) -> None:
        """Wake the scheduler (lock held) when it may have work: requests wait or it stops.

        Only then: waking a thread costs a GIL hand-over, about as long as a small model's run.
        """
        if self._queue or self._stopped:
            self._cond.notify_all()

    def _name(self) -> str:
        return f"{self.model.entry.name!r} version {self.model.entry.version!r}"

    def _draining(self) -> ModelNotReadyError:
        return ModelNotReadyError(f"server is draining; model {self._name()} takes no requests")

    def _count_dropped(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.observe_dropped(self.model.entry.name, reason)

    def _drop(self, request: _Request) -> None:
        """Fail a request that will not run (deadline passed or client gone) and count it."""
        expired = request.deadline is not None and time.monotonic() >= request.deadline
        self._count_dropped("deadline" if expired else "cancelled")
        if request.future.set_running_or_notify_cancel():
            if expired:
                error: RequestDroppedError = RequestDeadlineError(
                    f"deadline passed while the request waited for {self._name()}"
                )
            else:
                error = RequestDroppedError(f"client cancelled; {self._name()} did not run it")
            request.future.set_exception(error)

    def _drop_dead(self) -> None:
        """Remove (and fail) queued requests whose deadline passed or whose client left."""
        now = time.monotonic()
        alive: collections.deque[_Request] = collections.deque()
        for request in self._queue:
            if (request.deadline is not None and now >= request.deadline) or not (
                request.is_active()
            ):
                self._drop(request)
            else:
                alive.append(request)
        self._queue = alive

    def _full(self) -> bool:
        inputs = sum(r.inputs for r in self._queue)
        tokens = sum(r.tokens for r in self._queue)
        return inputs >= self.config.max_batch_size or tokens >= self.config.max_batch_tokens

    def _next_batch(self) -> list[_Request] | None:
        """Wait for requests, let the batch fill, and take it (None once stopped)."""
        config = self.config
        with self._cond:
            while True:
                # A batch forms when the model is free, so it takes every request that came
                # meanwhile, and deadlines are checked just before it runs.
                while (not self._queue or self._running) and not self._stopped:
                    if self._retired and not self._queue:
                        return None
                    self._cond.wait()
                if self._stopped:
                    return None
                close = self._queue[0].enqueued + config.max_queue_delay_s
                # A retired batcher's arrivals run alone: waiting for them would be in vain.
                while (
                    self._arriving > 0
                    and not self._stopped
                    and not self._retired
                    and not self._full()
                ):
                    remaining = close - time.perf_counter()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                self._drop_dead()
                batch: list[_Request] = []
                inputs = tokens = 0
                while self._queue:
                    head = self._queue[0]
                    if batch and (
                        inputs + head.inputs > config.max_batch_size
                        or tokens + head.tokens > config.max_batch_tokens
                    ):
                        break
                    self._queue.popleft()
                    if head.future.set_running_or_notify_cancel():
                        batch.append(head)
                        inputs += head.inputs
                        tokens += head.tokens
                if batch:
                    self._running += 1
                    return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run_and_release(batch)

    def _run_and_release(self, batch: list[_Request]) -> None:
        try:
            self._run(batch)
        finally:
            with self._cond:
                self._running -= 1
                self._wake()

    def _run(self, batch: list[_Request]) -> None:
        """Run a batch under the model's lock and hand every request its rows.

        A request is answered as soon as its last row is computed (text: after the
        length-sorted sub-batch that holds it), not when the whole batch is done: its client
        can send the next request while the model runs the rest, which keeps the model busy
        under many concurrent clients.
        """
        started = 0.0

        def answer(i: int, outputs: dict[str, np.ndarray]) -> None:
            request = batch[i]
            first = outputs[request.output_names[0]]
            run_s = time.perf_counter() - started
            timing = InferenceResult(first, max(0.0, started - request.enqueued), run_s)
            request.future.set_result((outputs, timing))

        def work() -> None:
            nonlocal started
            started = time.perf_counter()
            self._infer(batch, answer)

        try:
            self.model.exclusive(work)
        except Exception as e:
            left = [r for r in batch if not r.future.done()]
            if len(left) > 1:
                # Inputs are checked before they are queued, so this is rare; run each request
                # alone so that only the one at fault fails.
                log.warning("batch of %d requests failed (%s); running them alone", len(left), e)
                for request in left:
                    self._run([request])
            elif left:
                left[0].future.set_exception(e)
            return
        if self.metrics is not None:
            inputs = sum(r.inputs for r in batch)
            self.metrics.observe_batch(self.model.entry.name, inputs=inputs, requests=len(batch))

    def _infer(
        self, batch: list[_Request], answer: Callable[[int, dict[str, np.ndarray]], None]
    ) -> None:
        """Run the merged inputs; ``answer(i, rows by output name)`` each request once done."""
        offsets = [0, *itertools.accumulate(r.inputs for r in batch)]
        if batch[0].text is not None:
            self._infer_text(batch, offsets, answer)
            return
        names = list(dict.fromkeys(n for r in batch for n in r.output_names))
        if batch[0].images is not None:
            embedder = self.model.embedder
            assert embedder is not None
            images = [r.images for r in batch if r.images is not None]
            x = images[0] if len(images) == 1 else np.concatenate(images, axis=0)
            outputs = embedder.run_outputs(x, names)
        else:
            clips = [c for r in batch if r.audio is not None for c in r.audio]
            outputs = self.model.audio_outputs(
                clips,
                names,
                max_batch_size=self.config.max_batch_size,
                max_batch_seconds=self.config.max_batch_seconds,
            )
        arrays = dict(zip(names, outputs, strict=True))
        for i, r in enumerate(batch):
            answer(i, {name: arrays[name][offsets[i] : offsets[i + 1]] for name in r.output_names})

    def _infer_text(
        self,
        batch: list[_Request],
        offsets: list[int],
        answer: Callable[[int, dict[str, np.ndarray]], None],
    ) -> None:
        """Embed every request's text rows in length-sorted padded sub-batches; answer each
        request after the sub-batch that completes its rows.

        Which sub-batch completes which request is worked out before the first run, so only
        the copy of each run's rows and the answers come between one run and the next.
        """
        embedder = self.model.text_embedder
        assert embedder is not None
        ids: list[np.ndarray] = []
        types: list[np.ndarray | None] = []
        masks: list[np.ndarray | None] = []
        owner: list[int] = []
        for k, r in enumerate(batch):
            assert r.text is not None
            ids.extend(r.text.ids)
            types.extend(r.text.type_ids if r.text.type_ids is not None else [None] * r.inputs)
            masks.extend(r.text.masks if r.text.masks is not None else [None] * r.inputs)
            owner.extend([k] * r.inputs)
        names = list(dict.fromkeys(n for r in batch for n in r.output_names))
        runs = length_sorted_batches(
            [len(s) for s in ids],
            max_batch_size=self.config.max_batch_size,
            max_batch_tokens=self.config.max_batch_tokens,
        )
        last_run = {owner[i]: g for g, idx in enumerate(runs) for i in idx.tolist()}
        completes: list[list[int]] = [[] for _ in runs]
        for k, g in sorted(last_run.items()):
            completes[g].append(k)
        outs: dict[str, np.ndarray] = {}
        for g, idx in enumerate(runs):
            rows = idx.tolist()
            longest = max(len(ids[i]) for i in rows)
            padded = np.full((len(rows), longest), embedder.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), longest), dtype=np.int64)
            type_ids = np.zeros((len(rows), longest), dtype=np.int64)
            for j, i in enumerate(rows):
                n = len(ids[i])
                padded[j, :n] = ids[i]
                mask[j, :n] = 1 if masks[i] is None else masks[i]
                if types[i] is not None:
                    type_ids[j, :n] = types[i]
            arrays = embedder.run_padded(padded, mask, type_ids, names)
            for name, a in zip(names, arrays, strict=True):
                if name not in outs:
                    outs[name] = np.empty((len(ids), *a.shape[1:]), dtype=np.float32)
                outs[name][idx] = a
            for k in completes[g]:
                span = slice(offsets[k], offsets[k + 1])
                answer(k, {name: outs[name][span] for name in batch[k].output_names})


class Arrival:
    """A request on its way to a model's queue (see :meth:`ModelBatcher.arrival`)."""

    def __init__(self, batcher: ModelBatcher) -> None:
        self.batcher = batcher
        self.submitted = False

    def run_images(
        self,
        batch: np.ndarray,
        output_names: Sequence[str],
        *,
        method: str,
        call: CallState | None = None,
    ) -> tuple[dict[str, np.ndarray], InferenceResult]:
        """Queue a preprocessed image batch, wait for its batch to run, return its rows.

        Args:
            batch: ``(N, C, H, W) float32`` model inputs, N >= 1.
            output_names: Graph outputs wanted, e.g. ``["embedding"]``.
            method: RPC name (for logs).
            call: The RPC, for its deadline and liveness; None: no deadline.

        Returns:
            Each output's ``(N, ...) float32`` rows by name, and the first one's
            :class:`InferenceResult` (queue time, time in onnxruntime until its rows were done).

        Raises:
            QueueFullError: The model's queue is full (RESOURCE_EXHAUSTED).
            RequestDeadlineError: The deadline passed before the request ran.
            RequestDroppedError: The client cancelled before the request ran.
            ModelNotReadyError: The model is loading or the server is draining.
        """
        request = self._request(method, call, output_names, len(batch), 0)
        request.images = batch
        return self._wait(request)

    def run_text(
        self, rows: TextRows, output_name: str, *, method: str, call: CallState | None = None
    ) -> InferenceResult:
        """Queue a text request's token rows, wait for its batch, return its embeddings.

        Args:
            rows: N >= 1 token rows (see :class:`TextRows`).
            output_name: The model's embedding output.
            method: RPC name (for logs).
            call: The RPC, for its deadline and liveness; None: no deadline.

        Returns:
            ``(N, D) float32`` embeddings in row order, queue time and inference time.

        Raises:
            QueueFullError, RequestDeadlineError, RequestDroppedError, ModelNotReadyError: As
                for :meth:`run_images`.
        """
        tokens = sum(len(s) for s in rows.ids)
        request = self._request(method, call, [output_name], len(rows.ids), tokens)
        request.text = rows
        return self._wait(request)[1]

    def run_audio(
        self,
        clips: Sequence[np.ndarray],
        output_names: Sequence[str],
        *,
        method: str,
        call: CallState | None = None,
    ) -> tuple[dict[str, np.ndarray], InferenceResult]:
        """Queue an audio request's clips, wait for its batch to run, return its rows.

        Args:
            clips: N >= 1 arrays ``(T_i,) float32`` at the bundle's rate (preprocessed and
                checked by :mod:`ssl_serve.preprocess.audio`).
            output_names: Graph outputs wanted, e.g. ``["embedding"]``.
            method: RPC name (for logs).
            call: The RPC, for its deadline and liveness; None: no deadline.

        Returns:
            As :meth:`run_images`.

        Raises:
            QueueFullError, RequestDeadlineError, RequestDroppedError, ModelNotReadyError: As
                for :meth:`run_images`.
        """
        request = self._request(method, call, output_names, len(clips), 0)
        request.audio = clips
        return self._wait(request)

    def _request(
        self,
        method: str,
        call: CallState | None,
        output_names: Sequence[str],
        inputs: int,
        tokens: int,
    ) -> _Request:
        deadline = None
        is_active: Callable[[], bool] = lambda: True  # noqa: E731
        if call is not None:
            remaining = call.time_remaining()
            if remaining is not None and remaining < _NO_DEADLINE_S:
                deadline = time.monotonic() + remaining
            is_active = call.is_active
        return _Request(
            method, None, None, None, tuple(output_names), inputs, tokens, deadline, is_active
        )

    def _wait(self, request: _Request) -> tuple[dict[str, np.ndarray], InferenceResult]:
        self.batcher._submit(request, self)
        return request.future.result()


class DynamicBatcher:
    """One :class:`ModelBatcher` per model version of a registry (added and retired by reloads).

    Args:
        registry: The models served.
        config: The batching limits, shared by every model.
        metrics: Where batches, drops and queue depths are counted; None counts nothing.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        config: BatchingConfig,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._batchers: dict[LoadedModel, ModelBatcher] = {}
        for model in registry.models():
            self.add(model)

    def add(self, model: LoadedModel) -> ModelBatcher:
        """Give ``model`` (a model version about to be served) its batcher, started when this is.

        Returns:
            The new batcher.
        """
        batcher = ModelBatcher(model, self.config, self.metrics)
        with self._lock:
            self._batchers[model] = batcher
            if self._started and not self._stopped:
                batcher.start()
        if self.metrics is not None:
            name = model.entry.name
            self.metrics.track_queue_depth(name, functools.partial(self.queue_depth, name))
        return batcher

    def retire(self, model: LoadedModel, timeout_s: float) -> bool:
        """Retire ``model``'s batcher, wait until its requests are answered, then forget it.

        Args:
            model: A model version no longer served (the registry no longer resolves to it).
            timeout_s: Seconds to wait for its queued and running requests.

        Returns:
            Whether every request was answered within ``timeout_s`` (the batcher is forgotten
            either way; requests still running finish on their own threads).
        """
        with self._lock:
            batcher = self._batchers.get(model)
        if batcher is None:
            return True
        batcher.retire()
        idle = batcher.wait_idle(timeout_s)
        with self._lock:
            self._batchers.pop(model, None)
        return idle

    def queue_depth(self, name: str) -> int:
        """Requests waiting in the queues of every version of model ``name``."""
        with self._lock:
            batchers = [b for m, b in self._batchers.items() if m.entry.name == name]
        return sum(b.queue_depth for b in batchers)

    def for_model(self, model: LoadedModel) -> ModelBatcher:
        """The batcher of ``model`` (a model version the registry resolved).

        A request that resolved a model version just before a hot reload retired it gets a
        retired batcher, which runs it alone on the caller's thread.
        """
        with self._lock:
            batcher = self._batchers.get(model)
        if batcher is None:
            batcher = ModelBatcher(model, self.config, self.metrics)
            batcher.retire()
        return batcher

    def start(self) -> None:
        """Start every scheduler thread."""
        with self._lock:
            self._started = True
            batchers = list(self._batchers.values())
        for batcher in batchers:
            batcher.start()

    def stop(self) -> None:
        """Stop every scheduler; requests still queued fail with UNAVAILABLE."""
        with self._lock:
            self._stopped = True
            batchers = list(self._batchers.values())
        for batcher in batchers:
            batcher.stop()
