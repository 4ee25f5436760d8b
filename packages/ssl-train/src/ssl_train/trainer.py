"""The pretraining loop: views -> method loss -> optimiser, with checkpoints, logs and a progress bar.

Runs in one process or under ``torchrun`` (DDP): the recipe's batch size is global, each rank
takes its slice of every global batch, and rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import ssl_models
from ssl_models.layers import convert_to_distributed_batchnorm
from ssl_train.checkpoint import TrainerState, load_checkpoint, save_checkpoint
from ssl_train.data import build_views, epoch_order, example_inputs, load_images
from ssl_train.distributed import DistContext, all_reduce_mean, init_distributed
from ssl_train.errors import SslTrainError
from ssl_train.optim import build_optimizer
from ssl_train.recipe import Recipe
from ssl_train.schedule import warmup_cosine

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainResult:
    """What a finished (or stopped) run reports."""

    steps: int
    final_loss: float
    images_per_s: float
    seconds: float
    checkpoint: Path
    stopped_early: str | None
    skipped_steps: int = 0


def build_model(recipe: Recipe) -> ssl_models.SSLMethod:
    """The recipe's method around its encoder (weights initialised from ``recipe.seed``)."""
    torch.manual_seed(recipe.seed)
    return ssl_models.build_method(recipe.method, ssl_models.build_encoder(recipe.encoder))


def _rank_batch(recipe: Recipe, world_size: int) -> int:
    """Images per rank and micro-batch; the global batch must split evenly."""
    parts = world_size * recipe.trainer.accumulate_steps
    batch = recipe.budget.batch_size
    if batch % parts:
        raise SslTrainError(
            f"budget.batch_size={batch} does not split into {world_size} rank(s) x "
            f"{recipe.trainer.accumulate_steps} micro-batch(es); use a multiple of {parts}"
        )
    return batch // parts


class Trainer:
    """Runs one recipe into a run folder.

    The run folder gets ``recipe.yaml`` (resolved), ``metrics.jsonl`` (one JSON object per logged
    step), ``checkpoints/`` (docs/contracts.md) and ``train_summary.json``. SIGINT/SIGTERM stop
    the run after the current step with a checkpoint.

    Args:
        recipe: A validated recipe.
        output: The run folder (created).
        resume: Continue from ``output``'s latest checkpoint (same recipe required).
        overwrite: Delete a previous run in ``output`` first. Without it (or ``resume``), a
            folder that already holds a run is an error, so no run is mixed with another.

    Raises:
        CheckpointError: ``resume`` is set and no matching checkpoint exists.
        SslTrainError: ``output`` holds something and neither ``resume`` nor ``overwrite``.
        SslTrainError: The batch does not split over ranks/micro-batches, the dataset is smaller
            than one batch, or a loss is not finite under ``trainer.nonfinite: stop``.
    """

    def __init__(
        self, recipe: Recipe, output: str | Path, resume: bool = False, overwrite: bool = False
    ) -> None:
        self.recipe = recipe
        self.output = Path(output)
        self.resume = resume
        self.overwrite = overwrite
        self._stop_signal: str | None = None

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_signal = signal.Signals(signum).name

    def fit(self) -> TrainResult:
        """Train to the budget; returns throughput and the last checkpoint."""
        r = self.recipe
        ctx = init_distributed(r.trainer.device, r.distributed.backend)
        if r.threads:
            torch.set_num_threads(r.threads)
        micro = _rank_batch(r, ctx.world_size)
        recipe_yaml = r.to_yaml()
        if ctx.is_main:
            self._prepare_output()
            (self.output / "recipe.yaml").write_text(recipe_yaml)

        images, _ = load_images(r)
        n, batch = images.shape[0], r.budget.batch_size
        if n < batch:
            raise SslTrainError(f"dataset has {n} images, fewer than budget.batch_size={batch}")
        per_epoch = n // batch  # the last partial batch of an epoch is dropped
        epochs = r.budget.epochs or 0.0  # the recipe sets exactly one of steps and epochs
        total = r.budget.steps if r.budget.steps is not None else math.ceil(epochs * per_epoch)
        views = build_views(r)
        model = build_model(r)
        examples = example_inputs(r, images)
        model.to(ctx.device)
        if r.trainer.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if ctx.world_size > 1 and r.distributed.sync_batchnorm:
            # New modules replace the batch norms: convert before the optimiser sees parameters.
            sync_bn = (
                torch.nn.SyncBatchNorm.convert_sync_batchnorm
                if ctx.device.type == "cuda"
                else convert_to_distributed_batchnorm
            )
            model = sync_bn(model)  # type: ignore[assignment]
        optimizer = build_optimizer(model, r.optimizer)
        scaler = torch.amp.GradScaler(ctx.device.type, enabled=r.trainer.precision == "fp16")

        step, skipped = 0, 0
        if self.resume:
            state = load_checkpoint(self.output, model, optimizer, r.sha256(), recipe_yaml)
            step, skipped = state.step, state.skipped_steps
            if state.scaler:
                scaler.load_state_dict(state.scaler)
        runner: torch.nn.Module = model
        if ctx.world_size > 1:
            runner = DistributedDataParallel(
                runner, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
            )
        if r.trainer.compile:
            runner = torch.compile(runner)  # type: ignore[assignment]

        def checkpoint(at: int) -> Path:
            epoch, b = divmod(at, per_epoch)
            st = TrainerState(
                at,
                epoch,
                b,
                r.sha256(),
                skipped,
                scaler.state_dict() if scaler.is_enabled() else {},
            )
            path = self.output / "checkpoints" / f"step-{at:08d}"
            if ctx.is_main:
                path = save_checkpoint(
                    self.output, model=model, optimizer=optimizer, state=st, recipe_yaml=recipe_yaml,
                    example_inputs=examples, keep_last=r.checkpoint.keep_last,
                )  # fmt: skip
            ctx.barrier()
            return path

        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        metrics = (self.output / "metrics.jsonl").open("a") if ctx.is_main else None
        bar = tqdm(total=total, initial=step, desc=f"pretrain {r.name}", unit="step",
                   disable=not (r.logging.progress_bar and ctx.is_main), dynamic_ncols=True)  # fmt: skip
        start = time.perf_counter()
        timed_from, timed_steps = None, 0
        loss_value = float("nan")
        stopped: str | None = None
        model.train()
        order_epoch, order = -1, np.empty(0, dtype=np.int64)
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
                global_idx = order[b * batch : (b + 1) * batch]
                rank_idx = global_idx[ctx.rank * micro * r.trainer.accumulate_steps :][
                    : micro * r.trainer.accumulate_steps
                ]
                lr = warmup_cosine(
                    step, total, r.optimizer.lr, r.schedule.warmup_steps, r.schedule.final_lr_ratio
                )
                for g in optimizer.param_groups:
                    g["lr"] = lr
                loss = self._accumulate(runner, views, images, rank_idx, micro, epoch, ctx, scaler)
                loss = all_reduce_mean(loss, ctx.world_size)
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    if r.trainer.nonfinite == "stop":
                        raise SslTrainError(
                            f"loss is {loss_value} at step {step}; lower optimizer.lr (now "
                            f"{r.optimizer.lr}), add schedule.warmup_steps or set "
                            "trainer.nonfinite=skip; the last checkpoint is in "
                            f"{self.output / 'checkpoints'}"
                        )
                    skipped += 1
                    optimizer.zero_grad(set_to_none=True)
                    if scaler.is_enabled():
                        scaler.update(scaler.get_scale() / 2)
                else:
                    if r.trainer.clip_grad_norm is not None:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(model.parameters(), r.trainer.clip_grad_norm)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                step += 1
                model.after_optimizer_step(step, total)
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
                if metrics and (step % r.logging.every_steps == 0 or step == total):
                    row: dict[str, Any] = {"step": step, "epoch": epoch, "loss": loss_value, "lr": lr,
                                           "images_per_s": ips, "elapsed_s": time.perf_counter() - start,
                                           "skipped_steps": skipped}  # fmt: skip
                    metrics.write(json.dumps(row) + "\n")
                    metrics.flush()
                if step % r.checkpoint.every_steps == 0 and step < total:
                    checkpoint(step)
        finally:
            bar.close()
            if metrics:
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
        result = TrainResult(step, loss_value, ips, seconds, last_ckpt, stopped, skipped)
        if ctx.is_main:
            summary = {"steps": step, "final_loss": loss_value if math.isfinite(loss_value) else None, "images_per_s": ips,
                       "seconds": seconds, "checkpoint": str(last_ckpt), "stopped_early": stopped,
                       "skipped_steps": skipped, "world_size": ctx.world_size}  # fmt: skip
            (self.output / "train_summary.json").write_text(json.dumps(summary, indent=2))
        return result

    def _prepare_output(self) -> None:
        out = self.output
        if out.exists() and any(out.iterdir()) and not self.resume:
            is_run = (out / "recipe.yaml").is_file() or (out / "checkpoints").is_dir()
            if not (self.overwrite and is_run):
                raise SslTrainError(
                    f"{out} already holds {'a run' if is_run else 'files'}; pass --resume to "
                    f"continue it{', --overwrite to replace it' if is_run else ''}, or choose "
                    "another --output"
                )
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)

    def _accumulate(
        self,
        runner: torch.nn.Module,
        views: Any,
        images: torch.Tensor,
        rank_idx: np.ndarray,
        micro: int,
        epoch: int,
        ctx: DistContext,
        scaler: torch.amp.GradScaler,
    ) -> torch.Tensor:
        """Forward and backward over this rank's micro-batches; returns the mean loss."""
        r = self.recipe
        accum = r.trainer.accumulate_steps
        autocast = (
            torch.autocast(ctx.device.type, dtype=_AUTOCAST[r.trainer.precision])
            if r.trainer.precision in _AUTOCAST
            else contextlib.nullcontext()
        )
        total = torch.zeros((), device=ctx.device)
        for a in range(accum):
            idx = rank_idx[a * micro : (a + 1) * micro]
            batch_views = [
                v.to(ctx.device, non_blocking=True) for v in views(images[idx], idx, epoch)
            ]
            if r.trainer.channels_last:
                batch_views = [
                    v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v
                    for v in batch_views
                ]
            last = a == accum - 1
            sync = (
                contextlib.nullcontext()
                if last or not isinstance(runner, DistributedDataParallel)
                else runner.no_sync()
            )
            with sync:
                with autocast:
                    loss = runner(batch_views)
                scaler.scale(loss / accum).backward()
            total += loss.detach().float() / accum
        return total
