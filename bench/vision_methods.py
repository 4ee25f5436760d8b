"""Vision methods on Fashion-MNIST under one CPU budget: pretrain each shipped recipe, then evaluate.

Usage (inside the workspace): ./dev run python bench/vision_methods.py vicreg byol --minutes 10

For each method and seed:
1. calibrate: two short runs (``--calibration-steps`` and three times as many) measure the CPU
   seconds one optimiser step of the method costs on this machine (the difference of the two
   runs' process CPU time, so start-up cost cancels out); the schedule length is then
   ``minutes x 60 x threads / cpu_seconds_per_step`` optimiser steps (``--steps`` overrides).
   The budget is therefore a fixed amount of compute, ``minutes`` of a machine whose
   ``threads`` cores are busy (10 minutes on 2 threads = 1,200 CPU seconds), and the cosine
   schedule ends inside it instead of being cut. CPU time barely depends on other work on the
   machine, which only makes a run slower, not shorter. Calibration and training run at high
   priority (``nice -n -10`` when run as root);
2. ``ssl-train pretrain fashion_mnist_<method> --set budget.steps=S --set budget.max_minutes=6M``
   (the wall-clock cap only guards against a stalled machine);
3. ``ssl-train evaluate --checkpoint RUN --k 20 200 --linear-probe``: kNN top-1 (memory bank: all
   60,000 training images, queries: the 10,000 test images, cosine, t=0.1) and the linear probe.

Rows are merged into bench/results/vision_methods.json (one row per method and seed; rerunning
replaces the row; the summary fields are recomputed from all rows) and the table is printed. Each
row records the CPU seconds the pretraining process used and the 1-minute load average before and
after, so a row measured on a busy machine can be told apart.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "vision_methods.json"
BATCH = 256
# Baselines measured with the same protocol (`ssl-train evaluate --embeddings` on raw pixels /
# a random-initialised recipe encoder); see packages/ssl-models/README.md.
BASELINE_KEYS = ("knn_top1_raw_pixels_k20", "knn_top1_random_encoder_k20")


def _run(cmd: list[str]) -> str:
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout


def _pretrain(
    method: str, out: Path, steps: int, minutes: float | None, args, nice: bool = False
) -> dict:
    prefix = ["nice", "-n", "-10"] if nice and os.geteuid() == 0 else []
    train_out = _run([*prefix, "ssl-train", "pretrain", f"fashion_mnist_{method}", "--output", str(out), "--overwrite",
                      "--set", f"budget.steps={steps}", "--set", "budget.epochs=null",
                      "--set", f"budget.max_minutes={'null' if minutes is None else minutes}",
                      "--set", f"seed={args.seed}", "--set", f"threads={args.threads}",
                      "--set", "logging.progress_bar=false"])  # fmt: skip
    return json.loads(train_out.strip().splitlines()[-1])


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _summary(data: dict) -> None:
    rows = data["rows"]
    if not rows:
        return
    best_knn = max(rows, key=lambda r: r["knn_top1_k20"])
    probed = [r for r in rows if r.get("linear_probe") is not None]
    data["best_knn_top1_k20"] = {"value": best_knn["knn_top1_k20"], "method": best_knn["method"],
                                 "seed": best_knn["seed"], "budget_minutes": best_knn["budget_minutes"]}  # fmt: skip
    if probed:
        best_lp = max(probed, key=lambda r: r["linear_probe"])
        data["best_linear_probe"] = {"value": best_lp["linear_probe"], "method": best_lp["method"],
                                     "seed": best_lp["seed"], "budget_minutes": best_lp["budget_minutes"]}  # fmt: skip
    raw = data.get("knn_top1_raw_pixels_k20")
    if raw is not None:
        data["margin_over_raw_pixels_k20"] = round(best_knn["knn_top1_k20"] - raw, 4)
    data["seeds"] = sorted({r["seed"] for r in rows})


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("methods", nargs="+", help="recipe suffixes, e.g. simclr vicreg byol")
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget per method")
    parser.add_argument(
        "--steps", type=int, default=None, help="schedule length in steps (default: calibrated)"
    )
    parser.add_argument("--calibration-steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", default="runs/bench", help="run folders go here")
    args = parser.parse_args()

    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": []}
    for method in args.methods:
        out = Path(args.runs) / f"{method}-{args.minutes:g}min-seed{args.seed}"
        steps, cpu_per_step = args.steps, None
        if steps is None:
            calib_cpu = []
            for n in (args.calibration_steps, 3 * args.calibration_steps):
                c0 = _cpu_seconds()
                _pretrain(method, out, n, None, args, nice=True)
                calib_cpu.append(_cpu_seconds() - c0)
            cpu_per_step = (calib_cpu[1] - calib_cpu[0]) / (2 * args.calibration_steps)
            if cpu_per_step <= 0:
                # The longer run used less CPU than the shorter one (other jobs made the short
                # one's threads spin): fall back to the longer run's CPU per step, start-up
                # included, an overestimate that schedules fewer steps, never negative ones.
                cpu_per_step = calib_cpu[1] / (3 * args.calibration_steps)
                print(f"calibration: the {3 * args.calibration_steps}-step run used less CPU "
                      f"than the {args.calibration_steps}-step one {calib_cpu}; using "
                      f"{cpu_per_step:.3f} CPU s per step (start-up included)", flush=True)  # fmt: skip
            steps = int(args.minutes * 60 * args.threads / cpu_per_step)
        load_before = os.getloadavg()[0]
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        train = _pretrain(method, out, steps, 6 * args.minutes, args, nice=True)
        cpu, wall = _cpu_seconds() - cpu0, time.perf_counter() - t0
        load_after = os.getloadavg()[0]
        _run(["ssl-train", "evaluate", "--checkpoint", str(out), "--k", "20", "200",
              "--linear-probe", "--threads", str(args.threads), "--output", str(out / "eval.json")])  # fmt: skip
        ev = json.loads((out / "eval.json").read_text())
        row = {"method": method, "seed": args.seed, "budget_minutes": args.minutes,
               "threads": args.threads, "cpu_count": os.cpu_count(), "steps": train["steps"],
               "scheduled_steps": steps, "calibrated_cpu_s_per_step": cpu_per_step and round(cpu_per_step, 4),
               "budget_cpu_s": args.minutes * 60 * args.threads, "stopped_early": train["stopped_early"],
               "pretrain_images_per_s": train["images_per_s"],
               "pretrain_wall_s": round(wall, 1), "pretrain_cpu_s": round(cpu, 1),
               "load_avg_1min": [round(load_before, 2), round(load_after, 2)],
               "knn_top1_k20": ev["knn_top1_k20"], "knn_top1_k200": ev["knn_top1_k200"],
               "linear_probe": ev["linear_probe_top1"],
               "linear_probe_weight_decay": ev["linear_probe_weight_decay"],
               "run": str(out)}  # fmt: skip
        data["rows"] = [
            r
            for r in data["rows"]
            if (r["method"], r["seed"], r["budget_minutes"]) != (method, args.seed, args.minutes)
        ] + [row]
        _summary(data)
        RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\n{'method':<14} {'min':>4} {'seed':>4} {'steps':>6} {'img/s':>7} {'k=20':>7} "
          f"{'k=200':>7} {'linear':>7}")  # fmt: skip
    for r in sorted(data["rows"], key=lambda r: (r["budget_minutes"], -r["knn_top1_k20"])):
        lp = "" if r.get("linear_probe") is None else f"{r['linear_probe']:.4f}"
        print(f"{r['method']:<14} {r['budget_minutes']:>4g} {r['seed']:>4} {r['steps']:>6} "
              f"{r['pretrain_images_per_s']:>7.0f} {r['knn_top1_k20']:>7.4f} "
              f"{r['knn_top1_k200']:>7.4f} {lp:>7}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
