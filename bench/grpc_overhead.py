"""What a grpcio round trip costs on this machine, as a function of how long the handler runs.

Usage (inside the workspace, from the repository root, on an otherwise idle machine):

    ./dev run python bench/grpc_overhead.py

bench/serving.py compares the served single-sentence p50 with in-process onnxruntime (target:
within 1.5 ms). This script measures the part of that gap no server code can remove: a bare
grpcio server in its own process (a synchronous ``grpc.server`` with a thread pool, as
``ssl-serve serve`` runs), one generic unary method that waits ``W`` ms and answers 1,536
bytes (a 384-d float32 embedding), called by one synchronous client. The overhead is the
median round trip minus ``W``. The handler waits in two ways: ``sleep`` (idle, the GIL
released, as during ``session.run``) and ``spin`` (a busy Python loop, the core kept awake).

As a floor under that, the same ping-pong between two processes over a pipe, without gRPC.

Writes bench/results/grpc_overhead.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "grpc_overhead.json"
WAITS_MS = (0.0, 2.0, 5.0, 10.0, 20.0)
RESPONSE = b"\0" * 1536


def wait(seconds: float, how: str) -> None:
    if seconds <= 0:
        return
    if how == "sleep":
        time.sleep(seconds)
        return
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def serve_grpc() -> None:
    """The server process: prints its port, answers until killed."""
    import grpc

    def handler(request: bytes, context: object) -> bytes:
        seconds, spin = struct.unpack("d?", request)
        wait(seconds, "spin" if spin else "sleep")
        return RESPONSE

    method = grpc.unary_unary_rpc_method_handler(handler)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("Bench", {"W": method}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


def serve_pipe(requests: int, answers: int) -> None:
    """The pipe process: reads a wait, waits, answers one byte; ``q`` ends it."""
    while True:
        message = os.read(requests, 9)
        if message[:1] == b"q":
            return
        seconds, spin = struct.unpack("d?", message)
        wait(seconds, "spin" if spin else "sleep")
        os.write(answers, b"k")


def overhead_ms(call, seconds: float, spin: bool, calls: int) -> float:
    """Median of (round trip - wait) over ``calls`` calls after 20 warm-up calls, in ms."""
    message = struct.pack("d?", seconds, spin)
    for _ in range(20):
        call(message)
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        call(message)
        times.append(time.perf_counter() - t)
    return round(1000 * (float(np.median(times)) - seconds), 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=300, help="timed calls per row")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_grpc()
        return 0
    import grpc

    load_before = os.getloadavg()
    rows: dict[str, dict[str, float]] = {}
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/Bench/W")
            for how in ("sleep", "spin"):
                rows[f"grpc_{how}"] = {
                    f"{w:g}": overhead_ms(call, w / 1000, how == "spin", args.calls)
                    for w in WAITS_MS
                }
    finally:
        server.kill()
        server.wait()

    to_child, from_parent = os.pipe()
    to_parent, from_child = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the pipe process
        serve_pipe(to_child, from_child)
        os._exit(0)

    def pipe_call(message: bytes) -> None:
        os.write(from_parent, message)
        os.read(to_parent, 1)

    for how in ("sleep", "spin"):
        rows[f"pipe_{how}"] = {
            f"{w:g}": overhead_ms(pipe_call, w / 1000, how == "spin", args.calls) for w in WAITS_MS
        }
    os.write(from_parent, b"q" * 9)
    os.waitpid(child, 0)

    result = {
        "command": "./dev run python bench/grpc_overhead.py",
        "what": "median round trip minus the handler's wait, ms, by wait (ms)",
        "calls": args.calls,
        "response_bytes": len(RESPONSE),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "versions": {"python": platform.python_version(), "grpcio": grpc.__version__},
        "overhead_ms": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print("round trip minus handler wait, ms (median of "
          f"{args.calls} calls; grpcio {grpc.__version__}, {os.cpu_count()} CPUs)")  # fmt: skip
    print(f"{'handler wait':<14}" + "".join(f"{w:>8g}" for w in WAITS_MS))
    for name, row in rows.items():
        print(f"{name:<14}" + "".join(f"{row[f'{w:g}']:>8.3f}" for w in WAITS_MS))
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
