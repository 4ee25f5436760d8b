"""Hot reload: poll the model repository and add, replace or remove model versions while serving.

Every ``interval_s`` seconds the watcher lists the ``<name>/<version>/`` folders and takes each
one's :func:`~ssl_serve.repository.bundle_fingerprint` (size, mtime and inode of its files; no
reading). A folder whose fingerprint is the same in two polls in a row (so a copy in progress
is not read half-written) and differs from what is served is loaded and warmed *beside* the
version being served; then one atomic swap of the registry's snapshot makes it visible
(ListModels, GetModel, health, KServe ModelReady) and the replaced version's batcher is
retired: its queued requests run on it, and it is forgotten (and its session freed) once they
are answered. A version folder missing from two polls in a row is removed the same way. A
folder that fails to load (bad bundle.json, missing or corrupt model.onnx, failed warm-up) is
logged once per fingerprint and skipped; whatever was served keeps serving.

Reference: the repository polling of NVIDIA Triton Inference Server (``--model-control-mode
poll``, ``--repository-poll-secs``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ssl_serve.repository import Fingerprint, bundle_fingerprint, read_entry, version_folders
from ssl_serve.server.batcher import DynamicBatcher
from ssl_serve.server.metrics import ServerMetrics
from ssl_serve.server.models import LoadedModel, ModelRegistry, new_model

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (model name, version)


@dataclass
class ReloadReport:
    """What one poll changed.

    Attributes:
        added: Versions loaded that were not served before, as ``"name/version"``.
        replaced: Versions whose bundle files changed, loaded anew and swapped in.
        removed: Versions whose folder is gone, no longer served.
        failed: Versions that failed to load or validate (the old one, if any, still serves).
    """

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether the set of served versions changed."""
        return bool(self.added or self.replaced or self.removed)


class RepositoryWatcher:
    """Polls a registry's repository folder and hot-swaps the model versions it serves.

    Args:
        registry: The models served (its repository root is watched).
        batcher: The dynamic batcher; new versions get a batcher, replaced ones are retired.
        interval_s: Seconds between polls (> 0); a change is acted on after two polls agree.
        drain_timeout_s: Seconds a replaced or removed version's queued and running requests
            get before its batcher is forgotten (they still finish on their own threads).
        metrics: Where new model names are allowed as ``model`` label values; None: none.
        on_swap: Called after each swap with the model names served before and after (the
            server updates the per-model health statuses).

    Raises:
        ValueError: ``interval_s`` <= 0.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        batcher: DynamicBatcher,
        *,
        interval_s: float,
        drain_timeout_s: float = 30.0,
        metrics: ServerMetrics | None = None,
        on_swap: Callable[[set[str], set[str]], None] | None = None,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0 seconds, got {interval_s}")
        self.registry = registry
        self.batcher = batcher
        self.interval_s = interval_s
        self.drain_timeout_s = drain_timeout_s
        self.metrics = metrics
        self.on_swap = on_swap
        self._last_scan: dict[Key, Fingerprint] = {
            (m.entry.name, m.entry.version): m.entry.fingerprint for m in registry.models()
        }
        self._failed: dict[Key, Fingerprint] = {}
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hot-reload", daemon=True)

    def start(self) -> None:
        """Poll every ``interval_s`` seconds on a thread of its own."""
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop polling (after the poll in progress, which may be loading a model)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # a poll must never end hot reload for good
                log.exception("hot reload: poll failed; trying again in %.1f s", self.interval_s)

    def poll(self) -> ReloadReport:
        """Scan once; load, swap in and retire what two scans in a row agree has changed.

        Returns:
            What changed (and what failed to load).
        """
        with self._poll_lock:
            return self._poll()

    def _poll(self) -> ReloadReport:
        report = ReloadReport()
        root = self.registry.repository.root
        try:
            folders = version_folders(root)
        except OSError as e:
            log.warning("hot reload: cannot list %s (%s); serving what is loaded", root, e)
            return report
        scan = {(d.parent.name, d.name): (d, bundle_fingerprint(d)) for d in folders}
        previous = self._last_scan
        self._last_scan = {key: fp for key, (_, fp) in scan.items()}
        served = {(m.entry.name, m.entry.version): m for m in self.registry.models()}

        loaded: dict[Key, LoadedModel] = {}
        for key, (folder, fp) in scan.items():
            model = served.get(key)
            if previous.get(key) != fp or (model is not None and model.entry.fingerprint == fp):
                continue  # still being written (act next poll), or unchanged
            if self._failed.get(key) == fp:
                continue  # already reported; retried once its files change
            t0 = time.perf_counter()
            try:
                entry = read_entry(folder)
                candidate = new_model(entry)
                self.registry.load(candidate)
            except Exception as e:  # any load failure (onnxruntime raises untyped errors)
                self._failed[key] = fp
                report.failed.append("/".join(key))
                keeps = f"version {key[1]} keeps serving" if model else "not served"
                log.error("hot reload: %s/%s failed to load (%s); %s", *key, e, keeps)
                continue
            self._failed.pop(key, None)
            loaded[key] = candidate
            (report.replaced if model else report.added).append("/".join(key))
            log.info(
                "hot reload: %s %s/%s (loaded and warmed in %.0f ms)",
                "replacing" if model else "adding",
                *key,
                1000 * (time.perf_counter() - t0),
            )
        gone = [key for key in served if key not in scan and key not in previous]
        report.removed = ["/".join(key) for key in gone]
        for key in list(self._failed):
            if key not in scan:
                del self._failed[key]
        if not report.changed:
            return report

        for model in loaded.values():
            self.batcher.add(model)
        if self.metrics is not None:
            self.metrics.add_models(key[0] for key in loaded)
        names_before = {key[0] for key in served}
        kept = [m for key, m in served.items() if key not in loaded and key not in gone]
        self.registry.swap(kept + list(loaded.values()))
        names_after = {m.entry.name for m in self.registry.models()}
        if self.on_swap is not None:
            self.on_swap(names_before, names_after)
        for key in gone:
            log.info("hot reload: removed %s/%s", *key)
        # Retire after the swap: new requests already resolve to the new versions.
        for key in [k for k in loaded if k in served] + gone:
            old = served[key]
            t0 = time.perf_counter()
            if self.batcher.retire(old, self.drain_timeout_s):
                log.info(
                    "hot reload: unloaded the old %s/%s after its in-flight requests (%.0f ms)",
                    *key,
                    1000 * (time.perf_counter() - t0),
                )
            else:
                log.warning(
                    "hot reload: old %s/%s still busy after %.0f s; its requests finish on "
                    "their own threads",
                    *key,
                    self.drain_timeout_s,
                )
        return report
