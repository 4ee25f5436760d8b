"""The pretraining loop: views -> method loss -> optimiser, with checkpoints, logs and evaluation.

Runs in one process or under ``torchrun`` (DDP): the recipe's batch size is global, each rank
takes its slice of every global batch, and rank 0 logs, evaluates and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import ssl_models
from ssl_models.layers import convert_to_distributed_batchnorm
from ssl_train.checkpoint import (
    TrainerState,
    load_checkpoint,
    remove_stale_temporaries,
    resolve_checkpoint,
    save_checkpoint,
)
from ssl_train.data import (
    ImageData,
    check_data_source,
    describe_source,
    epoch_order,
    has_labelled_eval,
    load_images,
)
from ssl_train.distributed import DistContext, init_distributed
from ssl_train.early_stopping import EarlyStopping
from ssl_train.errors import CheckpointError, SslTrainError
from ssl_train.fsdp import (
    full_model_state,
    full_optimizer_state,
    is_sharded,
    shard_model,
    unsharded_copy,
)
from ssl_train.logging import METRICS_FILE, JsonlSink, MetricLogger, MlflowSink, TensorBoardSink
from ssl_train.logging.mlflow_sink import import_mlflow
from ssl_train.online_eval import Evaluation, OnlineEvaluator
from ssl_train.optim import build_optimizer, set_learning_rate
from ssl_train.paired_data import PairedData, build_clip_model, load_paired_data
from ssl_train.profiling import StepProfiler, format_summary
from ssl_train.recipe import Recipe
from ssl_train.rng_state import RngState
from ssl_train.run_report import write_plots
from ssl_train.schedule import WarmupCosine
from ssl_train.speech_data import SpeechData, load_speech_data, restore_step_schedules
from ssl_train.step import broadcast_flag, forward_backward, reduce_step
from ssl_train.stop_signals import StopSignals
from ssl_train.text_data import TextData, encoder_config, load_text_data, write_hf_model
from ssl_train.word_vectors import write_word_vectors

_log = logging.getLogger("ssl_train")


@dataclass
class TrainResult:
    """What a finished (or stopped) run reports.

    Attributes:
        steps: Optimiser steps done (over all resumed segments).
        final_loss: Loss of the last step (NaN if it was skipped).
        images_per_s: Global samples (images or texts) per second of this segment, from its
            second step on.
        seconds: Wall time of this segment (set-up excluded).
        checkpoint: The last checkpoint folder.
        stopped_early: Why the run stopped before its budget (a signal, ``max_minutes``,
            early stopping, ``stop_at_step``), or None.
        skipped_steps: Steps skipped for a non-finite loss.
        evaluation: The last online evaluation's values (``knn_top1``, ``collapse_std``, ...).
        tokens_per_s: Text runs: global real tokens (padding excluded) per second, as
            ``images_per_s``; None for images.
        hf_model: Text runs: the Hugging Face model folder written at the end, or None.
    """

    steps: int
    final_loss: float
    images_per_s: float
    seconds: float
    checkpoint: Path
    stopped_early: str | None
    skipped_steps: int = 0
    evaluation: dict[str, float] | None = None
    tokens_per_s: float | None = None
    hf_model: Path | None = None


def build_model(recipe: Recipe, vocab_size: int | None = None) -> ssl_models.SSLMethod:
    """The recipe's method around its encoder (weights initialised from ``recipe.seed``).

    Args:
        recipe: A validated recipe.
        vocab_size: Text recipes: the tokenizer's vocabulary size, which the encoder takes
            unless ``encoder.vocab_size`` is set (then they must agree).

    Raises:
        SslTrainError: A text recipe without a vocabulary size, or one that disagrees.
    """
    if recipe.data.is_paired:  # two towers: encoder (speech) and text_encoder
        return build_clip_model(recipe, vocab_size)
    torch.manual_seed(recipe.seed)
    encoder = ssl_models.build_encoder(encoder_config(recipe, vocab_size))
    return ssl_models.build_method(recipe.method, encoder)


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


@dataclass
class _Run:
    """What :meth:`Trainer.fit` builds once."""

    ctx: DistContext
    recipe_yaml: str
    data: ImageData | TextData | SpeechData | PairedData
    per_epoch: int
    total: int
    micro: int
    schedule: WarmupCosine
    model: ssl_models.SSLMethod
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    stopper: EarlyStopping
    examples: dict[str, torch.Tensor]
    every_epochs: int | None = None  # online evaluation period (recipe.evaluation)
    runner: torch.nn.Module | None = None  # the model as trained: DDP-wrapped, compiled

    @property
    def eval_period(self) -> int:
        """Steps between online evaluations (0: off)."""
        return (self.every_epochs or 0) * self.per_epoch


@dataclass
class _Counters:
    """What changes step by step and goes into every checkpoint."""

    step: int = 0
    skipped: int = 0
    loss_sum: float = 0.0  # finite losses since the last online evaluation
    loss_count: int = 0
    elapsed_before: float = 0.0  # training seconds of earlier segments
    loggers: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """Runs one recipe into a run folder.

    The run folder gets ``recipe.yaml`` (resolved), ``metrics.jsonl`` (one JSON object per
    logged step: loss, lr, images/s, the method's own diagnostics such as wav2vec 2.0's
    codebook perplexity, and the online evaluation's kNN top-1 and collapse monitor; a method's
    collapse warning is logged once), ``tensorboard/`` event files, ``mlruns/`` when MLflow is
    on with its default store, ``checkpoints/`` (docs/contracts.md), ``plots/`` and ``train_summary.json``.
    SIGINT/SIGTERM stop the run after the current step with a checkpoint (a second signal
    interrupts at once).

    Args:
        recipe: A validated recipe.
        output: The run folder (created).
        resume: Continue from ``output``'s latest checkpoint (same recipe required).
        overwrite: Delete a previous run in ``output`` first. Without it (or ``resume``), a
            folder that already holds a run is an error, so no run is mixed with another.

    Raises:
        RecipeError: An ``image_folder`` recipe's ``data.path`` is unset, missing or holds no
            readable image, or its ``data.eval_path`` is missing (the message names the key).
        CheckpointError: ``resume`` is set and no matching checkpoint exists, or it is corrupt
            or from another recipe or dataset.
        SslTrainError: ``output`` holds something and neither ``resume`` nor ``overwrite``.
        SslTrainError: The batch does not split over ranks/micro-batches, the dataset is smaller
            than one batch, a loss is not finite under ``trainer.nonfinite: stop``, or MLflow
            is enabled but not installed.
    """

    def __init__(
        self,
        recipe: Recipe,
        output: str | Path,
        resume: bool = False,
        overwrite: bool = False,
        profile_steps: int | None = None,
    ) -> None:
        self.recipe = recipe
        self.output = Path(output)
        self.resume = resume
        self.overwrite = overwrite
        self.profile_steps = profile_steps
        self._profiler: StepProfiler | None = None

    def fit(self, stop_at_step: int | None = None) -> TrainResult:
        """Train to the budget (or to ``stop_at_step``); returns throughput and the last checkpoint.

        Args:
            stop_at_step: Stop with a checkpoint once this many optimiser steps are done, as a
                signal would; schedules still span the whole budget, so a later ``resume``
                continues the same run exactly.
        """
        r = self.recipe
        run = self._build()
        counters, rng = self._load(run) if self.resume else (_Counters(), None)
        run.runner = run.model
        if run.ctx.world_size > 1 and not is_sharded(run.model):  # FSDP: sharded in _build
            cuda = run.ctx.device.type == "cuda"
            run.runner = DistributedDataParallel(
                run.model, device_ids=[run.ctx.device.index] if cuda else None
            )
        if r.trainer.compile:
            run.runner = torch.compile(run.runner)  # type: ignore[assignment]
        main = run.ctx.is_main
        resume_step = counters.step if self.resume else None
        logger = MetricLogger(self._sinks(counters.loggers, resume_step, run) if main else [])
        want_map = r.logging.plots and r.logging.embedding_map and has_labelled_eval(r)
        tokenizer = run.data.tokenizer if isinstance(run.data, TextData | PairedData) else None
        evaluator = (
            OnlineEvaluator(r, run.ctx.device, tokenizer)
            if main and (run.eval_period or want_map)
            else None
        )
        try:
            out = self._loop(run, counters, logger, evaluator, stop_at_step, rng)
        except BaseException:
            with contextlib.suppress(Exception):
                logger.close("FAILED")
            raise
        text = isinstance(run.data, TextData)
        # Under FSDP every rank gathers the weights for rank 0's plots and export.
        final_model = run.model
        if is_sharded(run.model) and broadcast_flag(
            out.paused is None and (r.logging.plots or text), run.ctx
        ):
            final_model = self._plain_model(run) or run.model  # the copy on rank 0
        if main:
            logger.flush()
            if r.logging.plots and out.paused is None:  # a paused run plots when it ends
                final_eval = out.last_eval if out.last_eval_step == counters.step else None
                write_plots(
                    self.output, r, final_model, evaluator, run.ctx.device, final_eval, logger
                )
            logger.close("KILLED" if out.paused and out.paused.startswith("SIG") else "FINISHED")
        hf = (
            write_hf_model(final_model, r, self.output)
            if main and text and out.paused is None
            else None
        )
        if main and out.paused is None and r.method.get("name") == "skip_gram":
            assert isinstance(run.data, TextData)
            vectors = write_word_vectors(final_model, run.data.tokenizer, self.output)
            _log.info("word vectors: %s (ssl_train.word_vectors.load_word_vectors)", vectors)
        evaluation = out.last_eval.metrics() if out.last_eval is not None else None
        result = TrainResult(counters.step, out.loss, out.images_per_s, out.seconds,
                             out.checkpoint, out.stopped, counters.skipped, evaluation,
                             out.tokens_per_s if text else None, hf)  # fmt: skip
        if main:
            summary = {"steps": counters.step, "final_loss": out.loss if math.isfinite(out.loss) else None,
                       f"{run.data.unit}_per_s": out.images_per_s, "seconds": out.seconds,
                       "checkpoint": str(out.checkpoint), "stopped_early": out.stopped,
                       "skipped_steps": counters.skipped, "world_size": run.ctx.world_size,
                       "evaluation": evaluation, "early_stopping": run.stopper.state_dict()}  # fmt: skip
            if text:
                summary.update(tokens_per_s=out.tokens_per_s, hf_model=str(hf) if hf else None)
            (self.output / "train_summary.json").write_text(json.dumps(summary, indent=2))
        return result

    def _build(self) -> _Run:
        """Process group, run folder, data, model, optimiser, scaler and schedules."""
        r = self.recipe
        check_data_source(r)  # before the run folder is touched
        ctx = init_distributed(r.trainer.device, r.distributed.backend)
        if r.logging.mlflow.enabled and ctx.is_main:
            import_mlflow()  # a missing optional dependency fails before any work
        if r.threads:
            torch.set_num_threads(r.threads)
        micro = _rank_batch(r, ctx.world_size)
        recipe_yaml = r.to_yaml()
        if ctx.is_main:
            self._prepare_output()
            (self.output / "recipe.yaml").write_text(recipe_yaml)
        data: ImageData | TextData | SpeechData | PairedData
        if r.data.is_paired:
            data = load_paired_data(r, self.output, ctx.is_main, ctx.barrier)
        elif r.data.is_text:
            data = load_text_data(r, self.output, ctx.is_main, ctx.barrier)
        elif r.data.is_speech:
            data = load_speech_data(r, self.output, ctx.is_main, ctx.barrier)
        else:
            images, _ = load_images(r)
            data = ImageData(r, images)
        n, batch = data.num_samples, r.budget.batch_size
        if n < batch:
            raise SslTrainError(
                f"dataset has {n} {data.unit}, fewer than budget.batch_size={batch}"
            )
        per_epoch = n // batch  # the last partial batch of an epoch is dropped
        epochs = r.budget.epochs or 0.0  # the recipe sets exactly one of steps and epochs
        total = r.budget.steps if r.budget.steps is not None else math.ceil(epochs * per_epoch)
        random.seed(r.seed)
        np.random.seed(r.seed % 2**32)
        vocab = data.tokenizer.get_vocab_size() if isinstance(data, TextData | PairedData) else None
        model = build_model(r, vocab)
        examples = data.example_inputs()
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
        if ctx.world_size > 1 and r.distributed.strategy == "fsdp":
            model = shard_model(model, ctx)  # before the optimiser, which takes the shards
        es = r.evaluation.early_stopping
        every_epochs = r.evaluation.every_epochs
        if not has_labelled_eval(r):
            every_epochs = None
            if ctx.is_main and r.data.is_text:
                _log.warning(
                    "online kNN evaluation is off: data.dataset %s has no labels (kNN needs a "
                    "labelled corpus: wordnet, fortunes); ssl-train evaluate is skipped too",
                    r.data.dataset,
                )
            elif ctx.is_main:
                what = "clips" if r.data.is_speech else "images"
                _log.warning(
                    "online kNN evaluation is off: data.eval_path is not set (a labelled folder, "
                    "one sub-folder of %s per class); set it to monitor kNN top-1 during "
                    "pretraining and to run ssl-train evaluate without --eval-path", what,
                )  # fmt: skip
        return _Run(
            ctx, recipe_yaml, data, per_epoch, total, micro,
            WarmupCosine(total, r.optimizer.lr, r.schedule.warmup_steps, r.schedule.final_lr_ratio),
            model, build_optimizer(model, r.optimizer),
            torch.amp.GradScaler(ctx.device.type, enabled=r.trainer.precision == "fp16"),
            EarlyStopping(es.monitor, es.patience, es.min_delta), examples,
            every_epochs=every_epochs,
        )  # fmt: skip

    def _load(self, run: _Run) -> tuple[_Counters, RngState | None]:
        """Restore the latest checkpoint into ``run``; returns the counters and RNG state."""
        r = self.recipe
        if run.ctx.is_main:
            remove_stale_temporaries(self.output)
        run.ctx.barrier()
        folder = resolve_checkpoint(self.output)
        state = load_checkpoint(folder, run.model, run.optimizer, r.sha256(), run.recipe_yaml)
        n = run.data.num_samples
        if state.dataset_size is not None and state.dataset_size != n:
            source = (
                f"data.dataset={r.data.dataset!r}"
                if r.data.is_text or r.data.dataset in ("spoken_digits", "spoken_words")
                else describe_source(r)
            )
            raise CheckpointError(
                f"{folder}: written for a dataset of {state.dataset_size} {run.data.unit}, this "
                f"run has {n} ({source}); the data position would not match"
            )
        diff = run.schedule.mismatch(state.schedule) if state.schedule else None
        if diff:
            raise CheckpointError(f"{folder}: learning-rate schedule differs ({diff})")
        if state.scaler:
            run.scaler.load_state_dict(state.scaler)
        restore_step_schedules(run.model, state.step, run.total)
        run.stopper.load_state_dict(state.monitor.get("early_stopping", {}))
        counters = _Counters(
            state.step, state.skipped_steps, float(state.monitor.get("loss_sum", 0.0)),
            int(state.monitor.get("loss_count", 0)), state.elapsed_s, dict(state.loggers),
        )  # fmt: skip
        return counters, state.rng

    def _checkpoint(self, run: _Run, c: _Counters, logger: MetricLogger, elapsed: float) -> Path:
        """Save the state after ``c.step`` steps (rank 0 writes, every rank waits)."""
        epoch, b = divmod(c.step, run.per_epoch)
        monitor = {"early_stopping": run.stopper.state_dict(), "loss_sum": c.loss_sum,
                   "loss_count": c.loss_count}  # fmt: skip
        state = TrainerState(
            c.step, epoch, b, self.recipe.sha256(), c.skipped,
            run.scaler.state_dict() if run.scaler.is_enabled() else {},
            world_size=run.ctx.world_size, dataset_size=run.data.num_samples,
            schedule=run.schedule.state_dict(), monitor=monitor,
            elapsed_s=c.elapsed_before + elapsed, loggers=c.loggers, rng=RngState.capture(),
        )  # fmt: skip
        path = self.output / "checkpoints" / f"step-{c.step:08d}"
        weights = optimizer_state = None
        if is_sharded(run.model):  # every rank sends its shards; rank 0 keeps full tensors
            weights = full_model_state(run.model, run.ctx.is_main)
            optimizer_state = full_optimizer_state(run.optimizer, run.ctx.is_main)
        if run.ctx.is_main:
            logger.flush()
            path = save_checkpoint(
                self.output, model=run.model, optimizer=run.optimizer, state=state,
                recipe_yaml=run.recipe_yaml, example_inputs=run.examples,
                keep_last=self.recipe.checkpoint.keep_last, model_state=weights,
                optimizer_state=optimizer_state,
            )  # fmt: skip
        run.ctx.barrier()
        return path

    def _loop(
        self,
        run: _Run,
        c: _Counters,
        logger: MetricLogger,
        evaluator: OnlineEvaluator | None,
        stop_at_step: int | None,
        rng: RngState | None,
    ) -> _LoopOutcome:
        """The training steps, from ``c.step`` to the budget or a stop; ends with a checkpoint."""
        r, ctx, batch = self.recipe, run.ctx, self.recipe.budget.batch_size
        n = run.data.num_samples
        out = _LoopOutcome()
        start = time.perf_counter()
        timed_from: float | None = None
        timed_steps = 0
        timed_tokens = 0
        text = isinstance(run.data, TextData)
        last_saved = -1
        order_epoch, order = -1, np.empty(0, dtype=np.int64)
        per_rank = run.micro * r.trainer.accumulate_steps
        bar = tqdm(total=run.total, initial=c.step, desc=f"pretrain {r.name}", unit="step",
                   disable=not (r.logging.progress_bar and ctx.is_main), dynamic_ncols=True)  # fmt: skip
        run.model.train()
        if self.profile_steps and ctx.is_main:
            self._profiler = StepProfiler(
                self.output / "profile", self.profile_steps, skip=1, device=ctx.device.type
            )
        if rng is not None:
            rng.restore()  # last, so nothing built above draws from the restored generators
        with StopSignals() as signals, bar:
            while c.step < run.total:
                if stop_at_step is not None and c.step >= stop_at_step:
                    out.stopped = out.paused = f"stop_at_step={stop_at_step}"
                    break
                epoch, b = divmod(c.step, run.per_epoch)
                if epoch != order_epoch:
                    order, order_epoch = epoch_order(r.seed, epoch, n), epoch
                rank_idx = order[b * batch : (b + 1) * batch][ctx.rank * per_rank :][:per_rank]
                lr = run.schedule(c.step)
                over_time, stop_requested = self._optimizer_step(
                    run, c, rank_idx, epoch, lr, signals, start, out
                )
                if timed_from is None:  # the first step pays one-off costs; time from the second
                    timed_from = time.perf_counter()
                else:
                    timed_steps += 1
                    elapsed = max(1e-9, time.perf_counter() - timed_from)
                    out.images_per_s = batch * timed_steps / elapsed
                    if text:
                        timed_tokens += run.data.tokens(order[b * batch : (b + 1) * batch]) or 0
                        out.tokens_per_s = timed_tokens / elapsed
                eval_due = bool(run.eval_period) and (
                    c.step % run.eval_period == 0 or c.step == run.total
                )
                row: dict[str, Any] = {}
                if ctx.is_main and (
                    eval_due or c.step % r.logging.every_steps == 0 or c.step == run.total
                ):
                    row = {"epoch": epoch, "loss": out.loss, "lr": lr,
                           f"{run.data.unit}_per_s": out.images_per_s,
                           "elapsed_s": c.elapsed_before + time.perf_counter() - start,
                           "skipped_steps": c.skipped}  # fmt: skip
                    if text:
                        row["tokens_per_s"] = out.tokens_per_s
                    row.update(run.model.training_diagnostics())
                    if not out.collapse_warned and (msg := run.model.collapse_warning()):
                        _log.warning("step %d: %s", c.step, msg)
                        out.collapse_warned = True
                stop_early = eval_due and self._evaluate(run, c, evaluator, row, out)
                if row:
                    logger.log(c.step, row)
                bar.update(1)
                postfix = {"loss": f"{out.loss:.4f}", "lr": f"{lr:.2e}"}
                if text:
                    postfix["tok_s"] = f"{out.tokens_per_s:.0f}"
                else:
                    postfix["img_s"] = f"{out.images_per_s:.0f}"
                bar.set_postfix(postfix, refresh=False)
                if stop_early:
                    out.stopped = run.stopper.reason()
                    break
                if stop_requested:
                    max_min = f"max_minutes={r.budget.max_minutes}"
                    out.stopped = signals.received or (
                        max_min if over_time else "stop on another rank"
                    )
                    out.paused = None if over_time else out.stopped
                    break
                if c.step % r.checkpoint.every_steps == 0 and c.step < run.total:
                    out.checkpoint = self._checkpoint(run, c, logger, time.perf_counter() - start)
                    last_saved = c.step
            if last_saved != c.step:
                out.checkpoint = self._checkpoint(run, c, logger, time.perf_counter() - start)
        out.seconds = time.perf_counter() - start
        return out

    def _optimizer_step(
        self,
        run: _Run,
        c: _Counters,
        rank_idx: np.ndarray,
        epoch: int,
        lr: float,
        signals: StopSignals,
        start: float,
        out: _LoopOutcome,
    ) -> tuple[bool, bool]:
        """One optimiser step (or a skipped one); returns (over max_minutes, stop requested)."""
        r, opt, scaler = self.recipe, run.optimizer, run.scaler
        set_learning_rate(opt, lr)
        skip_policy = r.trainer.nonfinite == "skip"
        buffers = dict(run.model.named_buffers()) if skip_policy else {}
        saved = {k: v.detach().clone() for k, v in buffers.items()}
        assert run.runner is not None
        prof = self._profiler
        if prof is not None:
            prof.begin_step()
        loss = forward_backward(r, run.runner, run.data.batch, rank_idx, run.micro, epoch,
                                run.ctx, scaler, prof)  # fmt: skip
        budget = r.budget.max_minutes
        over_time = budget is not None and time.perf_counter() - start > 60 * budget
        out.loss, stop_requested = reduce_step(
            loss, signals.received is not None or over_time, run.ctx
        )
        if not math.isfinite(out.loss):
            if not skip_policy:
                raise SslTrainError(
                    f"loss is {out.loss} at step {c.step}; lower optimizer.lr (now "
                    f"{r.optimizer.lr}), add schedule.warmup_steps or set "
                    f"trainer.nonfinite=skip; the last checkpoint is in {self.output / 'checkpoints'}"
                )
            c.skipped += 1
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():  # undo what the bad forward did to BN statistics and queues
                for k, v in buffers.items():
                    v.copy_(saved[k])
            if scaler.is_enabled():
                scaler.update(scaler.get_scale() / 2)
        else:
            with prof.phase("optimizer") if prof is not None else contextlib.nullcontext():
                if r.trainer.clip_grad_norm is not None:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(run.model.parameters(), r.trainer.clip_grad_norm)
                run.model.before_optimizer_step(c.step + 1, run.total)
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
                run.model.after_optimizer_step(c.step + 1, run.total)
            c.loss_sum, c.loss_count = c.loss_sum + out.loss, c.loss_count + 1
            c.step += 1
            if prof is not None and (summary := prof.end_step()) is not None:
                _log.info("%s", format_summary(summary))
            return over_time, stop_requested
        c.step += 1
        run.model.after_optimizer_step(c.step, run.total)
        return over_time, stop_requested

    def _evaluate(
        self,
        run: _Run,
        c: _Counters,
        evaluator: OnlineEvaluator | None,
        row: dict[str, Any],
        out: _LoopOutcome,
    ) -> bool:
        """Online evaluation on rank 0 into ``row``; True (on every rank) to stop early."""
        stop = False
        model = self._plain_model(run)  # under FSDP a gather that every rank joins
        if evaluator is not None and model is not None:
            ev = evaluator.evaluate(model)
            out.last_eval, out.last_eval_step = ev, c.step
            row.update(ev.metrics())
            values = {"knn_top1": ev.knn_top1, "collapse_std": ev.collapse_std,
                      "loss": c.loss_sum / max(1, c.loss_count)}  # fmt: skip
            stop = run.stopper.update(values[run.stopper.monitor], c.step)
        c.loss_sum, c.loss_count = 0.0, 0
        return broadcast_flag(stop, run.ctx)

    def _plain_model(self, run: _Run) -> ssl_models.SSLMethod | None:
        """The model rank 0 evaluates and exports: ``run.model``, or under FSDP an unsharded
        copy (collective: every rank calls it; the others get None)."""
        if not is_sharded(run.model):
            return run.model
        data = run.data
        vocab = data.tokenizer.get_vocab_size() if isinstance(data, TextData | PairedData) else None
        return unsharded_copy(run.model, lambda: build_model(self.recipe, vocab), run.ctx.is_main)

    def _sinks(self, loggers: dict[str, Any], resume_step: int | None, run: _Run) -> list[Any]:
        """The configured sinks; MLflow's run id goes into ``loggers`` (saved in checkpoints)."""
        lg = self.recipe.logging
        sinks: list[Any] = [JsonlSink(self.output / METRICS_FILE, resume_step)]
        if lg.tensorboard:
            sinks.append(TensorBoardSink(self.output / "tensorboard", resume_step, run.recipe_yaml))
        if lg.mlflow.enabled:
            ml = MlflowSink(
                self.output, lg.mlflow.tracking_uri, lg.mlflow.experiment or self.recipe.name,
                lg.mlflow.run_name or self.output.resolve().name,
                self.recipe.model_dump(mode="json"), loggers.get("mlflow_run_id"),
            )  # fmt: skip
            loggers["mlflow_run_id"] = ml.run_id
            sinks.append(ml)
        return sinks

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


@dataclass
class _LoopOutcome:
    """How :meth:`Trainer._loop` ended."""

    loss: float = float("nan")
    images_per_s: float = 0.0
    tokens_per_s: float = 0.0
    seconds: float = 0.0
    checkpoint: Path = Path()
    stopped: str | None = None
    paused: str | None = None  # a signal or stop_at_step: the run continues later (no plots)
    last_eval: Evaluation | None = None
    last_eval_step: int = -1
    collapse_warned: bool = False  # the method's collapse_warning was logged (once per run)
