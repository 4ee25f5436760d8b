"""bench/grpc_overhead.py end to end with few calls: every row and wait measured, the overhead
split into its request and response paths, and a gRPC round trip costlier than the same
ping-pong over a pipe."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_script_end_to_end(tmp_path):
    out = tmp_path / "grpc_overhead.json"
    cmd = [sys.executable, str(ROOT / "bench" / "grpc_overhead.py"), "--calls", "20",
           "--output", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(out.read_text())
    rows = result["overhead_ms"]
    assert sorted(rows) == [
        "grpc_aio_sleep", "grpc_sleep", "grpc_spin", "grpc_unix_sleep", "pipe_sleep", "pipe_spin"
    ]  # fmt: skip
    assert sorted(result["servers"]) == [r for r in sorted(rows) if r.startswith("grpc_")]
    for name, row in rows.items():
        assert list(row) == ["0", "2", "5", "10", "20"]
        for w, overhead in row.items():
            request, response = result["request_ms"][name][w], result["response_ms"][name][w]
            # Both paths are real time: each is positive, and they add up to the overhead
            # (medians of sums and sums of medians differ a little).
            assert math.isfinite(overhead) and request > 0 and response > 0, (name, w)
            assert abs(request + response - overhead) <= 0.5 * overhead + 0.05, (name, w)
    # A gRPC call crosses threads and HTTP/2 framing on both sides; a pipe write does not.
    assert rows["grpc_sleep"]["0"] > rows["pipe_sleep"]["0"] > 0
    assert result["calls"] == 20 and result["response_bytes"] == 1536
    assert "grpc_sleep" in proc.stdout and str(out) in proc.stdout
