"""Trainer overhead: the full trainer against a bare hand-written loop, and images/s per recipe.

Usage (inside the workspace):
    ./dev run python bench/trainer_overhead.py                       # CPU, 1 thread, fp32
    ./dev run python bench/trainer_overhead.py --device cuda --precision bf16 --threads 4

Part 1, overhead. One recipe (default fashion_mnist_byol: EMA target, AdamW, warm-up + cosine),
the same model, batch and in-memory Fashion-MNIST images, the same views and the same seeds, run
by (a) a bare loop written out here (views -> loss -> backward -> step -> EMA update) and (b)
ssl_train's Trainer with its logging on (progress bar, metrics.jsonl and TensorBoard every 10
steps, schedules, EMA, non-finite check, signal handling, checkpoint at the end). Online
evaluation and plots are off in the timed runs (they run between steps, not inside them; their
cost is reported separately). Both time steps 2..N (the first pays one-off costs); the runs
alternate, `--repeats` times, and each trainer run is compared with the bare run just before it:
``ratio_vs_bare_loop`` = median over the pairs of (trainer / bare mean step time), target
<= 1.10. The same ratio of process CPU time (``ratio_vs_bare_loop_cpu_time``) is steadier when
other processes share the cores. Both loops must compute the same losses (`same_losses`).

Part 2, throughput. Each shipped Fashion-MNIST recipe runs `--recipe-steps` steps through the
Trainer (its own batch size, model and views; evaluation and plots off) and reports images/s.

Thread counts are fixed (`torch.set_num_threads`) and written into the result with the load
average: on a shared machine the numbers are provisional. Writes
bench/results/trainer_overhead.json and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

import ssl_train.trainer
from ssl_models import SSLMethod
from ssl_train import recipe_from_dict
from ssl_train.data import build_views, epoch_order, load_images
from ssl_train.online_eval import OnlineEvaluator
from ssl_train.optim import build_optimizer
from ssl_train.recipe import Recipe
from ssl_train.recipes import shipped_recipes
from ssl_train.trainer import Trainer, build_model

RESULTS = Path(__file__).parent / "results" / "trainer_overhead.json"
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _recipe(name: str, args: argparse.Namespace, steps: int, images: int, **extra: str) -> Recipe:
    tree = yaml.safe_load(shipped_recipes()[name].read_text())
    tree["budget"].pop("epochs", None)
    tree["budget"].pop("max_minutes", None)
    overrides = [f"budget.steps={steps}", f"threads={args.threads}", f"data.limit={images}",
                 f"trainer.device={args.device}", f"trainer.precision={args.precision}",
                 "evaluation.every_epochs=null", "logging.plots=false", "logging.every_steps=10"]  # fmt: skip
    overrides += [f"{k.replace('__', '.')}={v}" for k, v in extra.items()]
    if args.batch_size:
        overrides.append(f"budget.batch_size={args.batch_size}")
    return recipe_from_dict(tree, overrides)


Stamps = list[tuple[float, float]]


def _stamp(model: torch.nn.Module) -> Stamps:
    """Record (wall, process CPU) seconds at the end of every optimiser step of ``model``.

    Both loops call ``after_optimizer_step`` once per step, so the intervals between stamps are
    whole steps, everything the loop does between two updates included.
    """
    stamps: Stamps = []
    update = model.after_optimizer_step

    def stamped(step: int, total: int) -> None:
        update(step, total)
        stamps.append((time.perf_counter(), time.process_time()))

    model.after_optimizer_step = stamped  # type: ignore[method-assign]
    return stamps


def _step_seconds(stamps: Stamps) -> tuple[float, float]:
    """Mean (wall, CPU) seconds per step over steps 2..N."""
    n = len(stamps) - 1
    return (stamps[-1][0] - stamps[0][0]) / n, (stamps[-1][1] - stamps[0][1]) / n


def bare_loop(recipe: Recipe) -> tuple[tuple[float, float], list[float]]:
    """The same training as the Trainer, by hand. Returns ((wall, CPU) s per step, losses)."""
    torch.set_num_threads(recipe.threads or torch.get_num_threads())
    device = torch.device("cuda" if recipe.trainer.device == "cuda" else "cpu")
    images, _ = load_images(recipe)
    n, batch, total = len(images), recipe.budget.batch_size, recipe.budget.steps or 0
    per_epoch = n // batch
    model = build_model(recipe).to(device)
    stamps = _stamp(model)
    opt = build_optimizer(model, recipe.optimizer)
    views = build_views(recipe)
    peak, warm = recipe.optimizer.lr, recipe.schedule.warmup_steps
    floor = peak * recipe.schedule.final_lr_ratio
    autocast = recipe.trainer.precision in _AUTOCAST
    model.train()
    losses = []
    order_epoch, order = -1, None
    for step in range(total):
        epoch, b = divmod(step, per_epoch)
        if epoch != order_epoch:
            order, order_epoch = epoch_order(recipe.seed, epoch, n), epoch
        assert order is not None
        idx = order[b * batch : (b + 1) * batch]
        if step < warm:
            lr = peak * (step + 1) / warm
        else:
            progress = min(1.0, (step - warm) / max(1, total - warm))
            lr = floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        for g in opt.param_groups:
            g["lr"] = lr
        batch_views = [v.to(device, non_blocking=True) for v in views(images[idx], idx, epoch)]
        with torch.autocast(
            device.type,
            dtype=_AUTOCAST.get(recipe.trainer.precision, torch.bfloat16),
            enabled=autocast,
        ):
            loss = model(batch_views)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.after_optimizer_step(step + 1, total)
        losses.append(loss.item())
    return _step_seconds(stamps), losses


def trainer_run(recipe: Recipe) -> tuple[tuple[float, float], list[float], float]:
    """((wall, CPU) s per step, losses from metrics.jsonl, wall s of fit) of the full Trainer."""
    stamps: Stamps = []

    def build_and_stamp(r: Recipe, vocab_size: int | None = None) -> SSLMethod:
        nonlocal stamps
        model = build_model(r, vocab_size)
        stamps = _stamp(model)
        return model

    real = ssl_train.trainer.build_model
    ssl_train.trainer.build_model = build_and_stamp
    try:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):  # the progress bar is drawn, not shown
                Trainer(recipe, Path(tmp) / "run").fit()
            wall = time.perf_counter() - start
            rows = [
                json.loads(x)
                for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()
            ]
    finally:
        ssl_train.trainer.build_model = real
    return _step_seconds(stamps), [r["loss"] for r in rows], wall


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--recipe", default="fashion_mnist_byol", help="recipe of the overhead comparison"
    )
    parser.add_argument("--steps", type=int, default=12, help="steps per overhead run")
    parser.add_argument("--repeats", type=int, default=5, help="alternating bare/trainer runs")
    parser.add_argument("--recipe-steps", type=int, default=6, help="steps per recipe in part 2")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="override every recipe's batch"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--skip-recipes", action="store_true", help="only the overhead comparison")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    # Part 1. The first trainer run logs every step, so both loops' losses can be compared.
    images = 4096
    recipe = _recipe(args.recipe, args, args.steps, images)
    compare = _recipe(args.recipe, args, args.steps, images, logging__every_steps="1")
    bare: list[tuple[float, float]] = []
    full: list[tuple[float, float]] = []
    same = True
    for rep in range(args.repeats):
        b, bare_losses = bare_loop(recipe)
        t, trainer_losses, _ = trainer_run(compare if rep == 0 else recipe)
        if rep == 0:
            same = bare_losses == trainer_losses
        bare.append(b)
        full.append(t)
        print(f"repeat {rep + 1}/{args.repeats}: bare {b[0] * 1000:.1f} ms/step "
              f"({b[1] * 1000:.1f} CPU), trainer {t[0] * 1000:.1f} ms/step ({t[1] * 1000:.1f} CPU)",
              flush=True)  # fmt: skip
    bare_wall, full_wall = (statistics.median(x[0] for x in v) for v in (bare, full))
    bare_cpu, full_cpu = (statistics.median(x[1] for x in v) for v in (bare, full))
    # Each trainer run is paired with the bare run just before it (similar machine load).
    ratio_wall = statistics.median(t[0] / b[0] for b, t in zip(bare, full, strict=True))
    ratio_cpu = statistics.median(t[1] / b[1] for b, t in zip(bare, full, strict=True))

    # Cost of one online evaluation (kNN on 10k bank + 2k queries) for the same recipe.
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    evaluator = OnlineEvaluator(_recipe(args.recipe, args, 1, 60000), device)
    model = build_model(recipe).to(device)
    start = time.perf_counter()
    evaluator.evaluate(model)
    eval_s = time.perf_counter() - start

    rows = {}
    if not args.skip_recipes:
        for name in sorted(n for n in shipped_recipes() if n.startswith("fashion_mnist_")):
            if not name.startswith("fashion_mnist_"):
                continue
            batch = _recipe(name, args, args.recipe_steps, 60000).budget.batch_size
            r = _recipe(name, args, args.recipe_steps, batch * (args.recipe_steps + 1))
            (wall_s, cpu_s), _, fit_s = trainer_run(r)
            rows[name] = {"images_per_s": round(batch / wall_s, 1), "batch_size": batch,
                          "steps": args.recipe_steps, "step_ms": round(wall_s * 1000, 1),
                          "cpu_step_ms": round(cpu_s * 1000, 1), "fit_wall_s": round(fit_s, 1)}  # fmt: skip
            print(f"{name}: {rows[name]['images_per_s']} images/s", flush=True)

    result = {
        "command": " ".join(["python", *sys.argv]),
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
        "precision": args.precision,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "overhead": {
            "recipe": args.recipe,
            "batch_size": recipe.budget.batch_size,
            "steps": args.steps,
            "repeats": args.repeats,
            "bare_step_ms": [round(x[0] * 1000, 2) for x in bare],
            "trainer_step_ms": [round(x[0] * 1000, 2) for x in full],
            "bare_cpu_step_ms": [round(x[1] * 1000, 2) for x in bare],
            "trainer_cpu_step_ms": [round(x[1] * 1000, 2) for x in full],
            "trainer_logging": "progress bar, metrics.jsonl + TensorBoard every 10 steps",
            "same_losses": same,
        },
        "ratio_vs_bare_loop": round(ratio_wall, 4),
        "ratio_vs_bare_loop_cpu_time": round(ratio_cpu, 4),
        "online_evaluation_s": round(eval_s, 2),
        "recipes": rows,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n{args.recipe}, batch {recipe.budget.batch_size}, {args.threads} thread(s), "
          f"{args.device}/{args.precision}, load average {load_before[0]:.1f}")  # fmt: skip
    print(f"{'loop':<10} {'ms/step':>9} {'CPU ms':>9} {'images/s':>9}")
    for label, wall, cpu in (("bare", bare_wall, bare_cpu), ("trainer", full_wall, full_cpu)):
        print(
            f"{label:<10} {wall * 1000:>9.1f} {cpu * 1000:>9.1f} {recipe.budget.batch_size / wall:>9.0f}"
        )
    print(f"ratio_vs_bare_loop = {result['ratio_vs_bare_loop']:.3f} (target <= 1.10), "
          f"CPU time {result['ratio_vs_bare_loop_cpu_time']:.3f}; same losses: {same}")  # fmt: skip
    print(f"one online evaluation (kNN, 10k bank + 2k queries): {eval_s:.1f} s")
    if rows:
        print(f"\n{'recipe':<30} {'batch':>6} {'images/s':>9}")
        for name, row in rows.items():
            print(f"{name:<30} {row['batch_size']:>6} {row['images_per_s']:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
