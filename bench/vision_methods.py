"""Vision methods on Fashion-MNIST under one CPU budget: pretrain each shipped recipe, then kNN top-1.

Usage (inside the workspace): ./dev run python bench/vision_methods.py vicreg byol --minutes 10

For each method: `ssl-train pretrain fashion_mnist_<method> --set budget.steps=S --set
budget.max_minutes=M`, then `ssl-train evaluate --checkpoint` (memory bank: all 60,000 training
images, queries: the 10,000 test images, cosine, t=0.1). Rows are merged into
bench/results/vision_methods.json (one row per method and seed; rerunning replaces the row) and
the table is printed. Linear-probe accuracy is not measured yet (ssl-train has no probe yet).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "vision_methods.json"


def _run(cmd: list[str]) -> str:
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("methods", nargs="+", help="recipe suffixes, e.g. simclr vicreg byol")
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget per method")
    parser.add_argument(
        "--steps", type=int, default=1500, help="schedule length in steps (cut by --minutes)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", default="runs/bench", help="run folders go here")
    args = parser.parse_args()

    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": []}
    for method in args.methods:
        out = Path(args.runs) / f"{method}-seed{args.seed}"
        train_out = _run(["ssl-train", "pretrain", f"fashion_mnist_{method}", "--output", str(out), "--overwrite",
                      "--set", f"budget.steps={args.steps}", "--set", "budget.epochs=null",
                      "--set", f"budget.max_minutes={args.minutes}", "--set", f"seed={args.seed}",
                      "--set", f"threads={args.threads}", "--set", "logging.progress_bar=false"])  # fmt: skip
        train = json.loads(train_out.strip().splitlines()[-1])
        _run(
            [
                "ssl-train",
                "evaluate",
                "--checkpoint",
                str(out),
                "--k",
                "20",
                "200",
                "--output",
                str(out / "knn.json"),
            ]
        )
        knn = json.loads((out / "knn.json").read_text())
        row = {"method": method, "seed": args.seed, "budget_minutes": args.minutes, "threads": args.threads,
               "cpu_count": os.cpu_count(), "steps": train["steps"], "stopped_early": train["stopped_early"],
               "pretrain_images_per_s": train["images_per_s"], "knn_top1_k20": knn["knn_top1_k20"],
               "knn_top1_k200": knn["knn_top1_k200"], "linear_probe": None}  # fmt: skip
        data["rows"] = [
            r for r in data["rows"] if (r["method"], r["seed"]) != (method, args.seed)
        ] + [row]
        RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\n{'method':<14} {'seed':>4} {'steps':>6} {'img/s':>7} {'k=20':>7} {'k=200':>7}")
    for r in data["rows"]:
        print(f"{r['method']:<14} {r['seed']:>4} {r['steps']:>6} {r['pretrain_images_per_s']:>7.0f} "
              f"{r['knn_top1_k20']:>7.4f} {r['knn_top1_k200']:>7.4f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
