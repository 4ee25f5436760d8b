"""What a grpcio round trip costs on this machine, as a function of how long the handler runs.

Usage (inside the workspace, from the repository root, on an otherwise idle machine):

    ./dev run python bench/grpc_overhead.py

bench/serving.py compares the served single-sentence p50 with in-process onnxruntime (target:
within 1.5 ms). This script measures the part of that gap no server code can remove: a bare
grpcio server in its own process, one generic unary method that waits ``W`` ms and answers
1,536 bytes (a 384-d float32 embedding), called by one synchronous client. The overhead is the
median round trip minus ``W``. The handler waits in two ways: ``sleep`` (idle, the GIL
released, as during ``session.run``) and ``spin`` (a busy Python loop, the core kept awake).

Servers (rows ``grpc_*``):

- ``grpc_sleep`` / ``grpc_spin``: a synchronous ``grpc.server`` with a thread pool, as
  ``ssl-serve serve`` runs, over TCP on 127.0.0.1;
- ``grpc_unix_sleep``: the same server over a Unix domain socket (no TCP stack);
- ``grpc_aio_sleep``: a ``grpc.aio`` server whose handler awaits ``asyncio.sleep(W)`` on the
  event loop (no thread pool hand-over).

Each answer starts with the handler's start and end times (``time.perf_counter``:
CLOCK_MONOTONIC, one clock for every process on Linux), which splits the overhead into the
request path (client call -> handler start) and the response path (handler end -> client has
the answer). As a floor under all of it, the same ping-pong between two processes over a pipe,
without gRPC (rows ``pipe_*``).

Writes bench/results/grpc_overhead.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "grpc_overhead.json"
WAITS_MS = (0.0, 2.0, 5.0, 10.0, 20.0)
RESPONSE_BYTES = 1536
# row -> (server kind, transport, how the handler waits)
GRPC_ROWS = {
    "grpc_sleep": ("sync", "tcp", "sleep"),
    "grpc_spin": ("sync", "tcp", "spin"),
    "grpc_unix_sleep": ("sync", "unix", "sleep"),
    "grpc_aio_sleep": ("aio", "tcp", "sleep"),
}


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def wait(seconds: float, how: str) -> None:
    if seconds <= 0:
        return
    if how == "sleep":
        time.sleep(seconds)
    else:
        spin(seconds)


def answer(started: float) -> bytes:
    """The response: handler start and end times, padded to RESPONSE_BYTES."""
    stamps = struct.pack("dd", started, time.perf_counter())
    return stamps + b"\0" * (RESPONSE_BYTES - len(stamps))


def serve_grpc(kind: str, address: str) -> None:
    """The server process: prints its port, answers until killed."""
    import grpc

    def sync_handler(request: bytes, context: object) -> bytes:
        started = time.perf_counter()
        seconds, spinning = struct.unpack("d?", request)
        wait(seconds, "spin" if spinning else "sleep")
        return answer(started)

    async def aio_handler(request: bytes, context: object) -> bytes:
        started = time.perf_counter()
        seconds, spinning = struct.unpack("d?", request)
        if spinning:
            spin(seconds)
        elif seconds > 0:
            await asyncio.sleep(seconds)
        return answer(started)

    def handlers(handler: Callable) -> tuple:
        method = grpc.unary_unary_rpc_method_handler(handler)
        return (grpc.method_handlers_generic_handler("Bench", {"W": method}),)

    if kind == "sync":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers(handlers(sync_handler))
        print(server.add_insecure_port(address), flush=True)
        server.start()
        server.wait_for_termination()
        return

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(handlers(aio_handler))
        print(server.add_insecure_port(address), flush=True)
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def serve_pipe(requests: int, answers: int) -> None:
    """The pipe process: reads a wait, waits, answers its start and end times; ``q`` ends it."""
    while True:
        message = os.read(requests, 9)
        if message[:1] == b"q":
            return
        started = time.perf_counter()
        seconds, spinning = struct.unpack("d?", message)
        wait(seconds, "spin" if spinning else "sleep")
        os.write(answers, struct.pack("dd", started, time.perf_counter()))


def measure(call: Callable[[bytes], bytes], seconds: float, spinning: bool, calls: int) -> dict:
    """Medians over ``calls`` calls after 20 warm-up calls, in ms: the round trip minus the
    handler's time (``overhead``), and its ``request`` and ``response`` paths."""
    message = struct.pack("d?", seconds, spinning)
    for _ in range(20):
        call(message)
    overhead, request, response = [], [], []
    for _ in range(calls):
        t = time.perf_counter()
        reply = call(message)
        done = time.perf_counter()
        started, ended = struct.unpack("dd", reply[:16])
        overhead.append(done - t - (ended - started))
        request.append(started - t)
        response.append(done - ended)
    return {
        key: round(1000 * float(np.median(values)), 3)
        for key, values in (("overhead", overhead), ("request", request), ("response", response))
    }


def grpc_rows(calls: int) -> dict[str, dict[str, dict]]:
    """Every GRPC_ROWS row, each against its own server process."""
    import grpc

    rows: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (kind, transport, how) in GRPC_ROWS.items():
            address = f"unix:{tmp}/{name}.sock" if transport == "unix" else "127.0.0.1:0"
            server = subprocess.Popen(
                [sys.executable, __file__, "--serve", kind, address],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert server.stdout is not None
                port = int(server.stdout.readline())
                target = address if transport == "unix" else f"127.0.0.1:{port}"
                with grpc.insecure_channel(target) as channel:
                    call = channel.unary_unary("/Bench/W")
                    rows[name] = {
                        f"{w:g}": measure(call, w / 1000, how == "spin", calls) for w in WAITS_MS
                    }
            finally:
                server.kill()
                server.wait()
    return rows


def pipe_rows(calls: int) -> dict[str, dict[str, dict]]:
    to_child, from_parent = os.pipe()
    to_parent, from_child = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the pipe process
        serve_pipe(to_child, from_child)
        os._exit(0)

    def pipe_call(message: bytes) -> bytes:
        os.write(from_parent, message)
        return os.read(to_parent, 16)

    rows = {
        f"pipe_{how}": {
            f"{w:g}": measure(pipe_call, w / 1000, how == "spin", calls) for w in WAITS_MS
        }
        for how in ("sleep", "spin")
    }
    os.write(from_parent, b"q" * 9)
    os.waitpid(child, 0)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=300, help="timed calls per row and wait")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "ADDRESS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_grpc(*args.serve)
        return 0
    import grpc

    load_before = os.getloadavg()
    measured = {**grpc_rows(args.calls), **pipe_rows(args.calls)}

    def part(key: str) -> dict[str, dict[str, float]]:
        return {name: {w: m[key] for w, m in row.items()} for name, row in measured.items()}

    result = {
        "command": "./dev run python bench/grpc_overhead.py",
        "what": "medians in ms by the handler's wait (ms): overhead_ms = round trip minus the "
        "handler's time; request_ms = client call to handler start; response_ms = handler end "
        "to the client holding the answer",
        "calls": args.calls,
        "response_bytes": RESPONSE_BYTES,
        "servers": {
            name: {"server": kind, "transport": transport, "handler_wait": how}
            for name, (kind, transport, how) in GRPC_ROWS.items()
        },
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "versions": {"python": platform.python_version(), "grpcio": grpc.__version__},
        "overhead_ms": part("overhead"),
        "request_ms": part("request"),
        "response_ms": part("response"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print("round trip minus handler time, ms, as request + response path (median of "
          f"{args.calls} calls; grpcio {grpc.__version__}, {os.cpu_count()} CPUs)")  # fmt: skip
    print(f"{'handler wait':<16}" + "".join(f"{w:>18g}" for w in WAITS_MS))
    for name, row in measured.items():
        cells = (f"{m['overhead']:.2f} ({m['request']:.2f}+{m['response']:.2f})"
                 for m in row.values())  # fmt: skip
        print(f"{name:<16}" + "".join(f"{c:>18}" for c in cells))
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
