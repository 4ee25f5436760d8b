"""The pretraining loop: views -> method loss -> optimiser, with checkpoints, logs and a progress bar."""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import torch
from tqdm import tqdm

import ssl_models
from ssl_train.checkpoint import TrainerState, load_checkpoint, save_checkpoint
from ssl_train.data import build_views, epoch_order, example_inputs, load_images
from ssl_train.errors import SslTrainError
from ssl_train.optim import build_optimizer
from ssl_train.recipe import Recipe
from ssl_train.schedule import warmup_cosine


@dataclass
class TrainResult:
    """What a finished (or stopped) run reports."""

    steps: int
    final_loss: float
    images_per_s: float
    seconds: float
    checkpoint: Path
    stopped_early: str | None


def build_model(recipe: Recipe) -> ssl_models.SSLMethod:
    """The recipe's method around its encoder (weights initialised from ``recipe.seed``)."""
    torch.manual_seed(recipe.seed)
    return ssl_models.build_method(recipe.method, ssl_models.build_encoder(recipe.encoder))


class Trainer:
    """Runs one recipe into a run folder.

    The run folder gets ``recipe.yaml`` (resolved), ``metrics.jsonl`` (one JSON object per logged
    step), ``checkpoints/`` (docs/contracts.md) and ``train_summary.json``. SIGINT/SIGTERM stop
    the run after the current step with a checkpoint.

    Args:
        recipe: A validated recipe.
        output: The run folder (created).
        resume: Continue from ``output``'s latest checkpoint (same recipe required).

    Raises:
        CheckpointError: ``resume`` is set and no matching checkpoint exists.
    """

    def __init__(self, recipe: Recipe, output: str | Path, resume: bool = False) -> None:
        self.recipe = recipe
        self.output = Path(output)
        self.resume = resume
        self._stop_signal: str | None = None

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_signal = signal.Signals(signum).name

    def fit(self) -> TrainResult:
        """Train to the budget; returns throughput and the last checkpoint."""
        r = self.recipe
        if r.threads:
            torch.set_num_threads(r.threads)
        self.output.mkdir(parents=True, exist_ok=True)
        recipe_yaml = r.to_yaml()
        (self.output / "recipe.yaml").write_text(recipe_yaml)

        images, _ = load_images(r)
        n = images.shape[0]
        batch = r.budget.batch_size
        if n < batch:
            raise SslTrainError(f"dataset has {n} images, fewer than budget.batch_size={batch}")
        per_epoch = n // batch  # the last partial batch of an epoch is dropped
        epochs = r.budget.epochs or 0.0  # the recipe sets exactly one of steps and epochs
        total = r.budget.steps if r.budget.steps is not None else math.ceil(epochs * per_epoch)
        views = build_views(r)
        model = build_model(r)
        optimizer = build_optimizer(model, r.optimizer)
        examples = example_inputs(r, images)

        step = 0
        if self.resume:
            state = load_checkpoint(self.output, model, optimizer, r.sha256())
            step = state.step

        def checkpoint(at: int) -> Path:
            epoch, b = divmod(at, per_epoch)
            st = TrainerState(at, epoch, b, r.sha256())
            return save_checkpoint(
                self.output,
                model=model,
                optimizer=optimizer,
                state=st,
                recipe_yaml=recipe_yaml,
                example_inputs=examples,
                keep_last=r.checkpoint.keep_last,
            )

        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        metrics = (self.output / "metrics.jsonl").open("a")
        bar = tqdm(
            total=total,
            initial=step,
            desc=f"pretrain {r.name}",
            unit="step",
            disable=not r.logging.progress_bar,
            dynamic_ncols=True,
        )
        start = time.perf_counter()
        timed_from, timed_steps = None, 0
        loss_value = float("nan")
        stopped: str | None = None
        last_ckpt = None
        model.train()
        order_epoch, order = -1, None
        try:
            while step < total:
                if self._stop_signal:
                    stopped = self._stop_signal
                    break
                if (
                    r.budget.max_minutes is not None
                    and time.perf_counter() - start > 60 * r.budget.max_minutes
                ):
                    stopped = f"max_minutes={r.budget.max_minutes}"
                    break
                epoch, b = divmod(step, per_epoch)
                if epoch != order_epoch:
                    order, order_epoch = epoch_order(r.seed, epoch, n), epoch
                idx = order[b * batch : (b + 1) * batch]  # type: ignore[index]
                lr = warmup_cosine(
                    step, total, r.optimizer.lr, r.schedule.warmup_steps, r.schedule.final_lr_ratio
                )
                for g in optimizer.param_groups:
                    g["lr"] = lr
                loss = model.training_loss(views(images[idx], idx, epoch))
                if not torch.isfinite(loss):
                    raise SslTrainError(
                        f"loss is {loss.item()} at step {step}; lower optimizer.lr (now {r.optimizer.lr}) "
                        f"or add schedule.warmup_steps; last good checkpoint: {last_ckpt}"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                model.after_optimizer_step(step, total)
                loss_value = loss.item()
                if timed_from is None:  # the first step pays one-off costs; time from the second
                    timed_from = time.perf_counter()
                else:
                    timed_steps += 1
                ips = (
                    batch * timed_steps / max(1e-9, time.perf_counter() - timed_from)
                    if timed_steps
                    else 0.0
                )
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", img_s=f"{ips:.0f}")
                if step % r.logging.every_steps == 0 or step == total:
                    metrics.write(
                        json.dumps(
                            {
                                "step": step,
                                "epoch": epoch,
                                "loss": loss_value,
                                "lr": lr,
                                "images_per_s": ips,
                                "elapsed_s": time.perf_counter() - start,
                            }
                        )
                        + "\n"
                    )
                    metrics.flush()
                if step % r.checkpoint.every_steps == 0 and step < total:
                    last_ckpt = checkpoint(step)
        finally:
            bar.close()
            metrics.close()
            for s, h in handlers.items():
                signal.signal(s, h)
        last_ckpt = checkpoint(step)
        seconds = time.perf_counter() - start
        ips = (
            batch * timed_steps / max(1e-9, time.perf_counter() - timed_from)
            if timed_steps and timed_from
            else 0.0
        )
        result = TrainResult(step, loss_value, ips, seconds, last_ckpt, stopped)
        (self.output / "train_summary.json").write_text(
            json.dumps(
                {
                    "steps": step,
                    "final_loss": loss_value,
                    "images_per_s": ips,
                    "seconds": seconds,
                    "checkpoint": str(last_ckpt),
                    "stopped_early": stopped,
                },
                indent=2,
            )
        )
        return result
