"""One optimiser step's forward and backward passes, across micro-batches and ranks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ssl_models.text import TokenLevelLM, total_loss_tokens
from ssl_train.distributed import DistContext
from ssl_train.fsdp import set_gradient_sync
from ssl_train.profiling import StepProfiler
from ssl_train.recipe import Recipe

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def forward_backward(
    recipe: Recipe,
    runner: torch.nn.Module,
    batches: Callable[[np.ndarray, int], Any],
    rank_idx: np.ndarray,
    micro: int,
    epoch: int,
    ctx: DistContext,
    scaler: torch.amp.GradScaler,
    profiler: StepProfiler | None = None,
) -> torch.Tensor:
    """Forward and backward over this rank's micro-batches; gradients accumulate in ``.grad``.

    Under DDP, gradients are all-reduced only on the last micro-batch (``no_sync`` before it);
    under FSDP they are reduce-scattered only then (``set_requires_gradient_sync``).

    Args:
        recipe: ``trainer.accumulate_steps``, ``precision`` (autocast dtype) and
            ``channels_last``.
        runner: The method as trained (DDP-wrapped, FSDP-sharded and/or compiled); returns
            the scalar loss.
        batches: ``(indices, epoch) -> batch``: a list of view tensors (images, see
            :class:`ssl_train.data.ImageData`) or a dict of ``(B, L)`` token tensors (text, see
            :class:`ssl_train.text_data.TextData`).
        rank_idx: ``(accumulate_steps * micro,) int64`` this rank's sample indices.
        micro: Samples per micro-batch.
        epoch: Epoch of the batch (augmentations are functions of seed, epoch and index).
        ctx: Rank and device.
        scaler: Gradient scaler (a no-op unless fp16).
        profiler: Marks the data, forward and backward phases while it records.

    Returns:
        Scalar float32 (detached): the mean loss over the micro-batches; for token-level
        language models (:class:`~ssl_models.text.TokenLevelLM`) this rank's share of the
        step's per-token mean times the world size, so the mean over ranks
        (:func:`reduce_step`) is the per-token mean of the whole global batch.
    """
    accum = recipe.trainer.accumulate_steps
    precision = recipe.trainer.precision
    autocast = (
        torch.autocast(ctx.device.type, dtype=AUTOCAST[precision])
        if precision in AUTOCAST
        else contextlib.nullcontext()
    )
    phase = profiler.phase if profiler is not None else _no_phase

    def load(a: int) -> Any:
        with phase("data"):
            batch = batches(rank_idx[a * micro : (a + 1) * micro], epoch)
        if isinstance(batch, Mapping):
            return {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}
        views = [v.to(ctx.device, non_blocking=True) for v in batch]
        if recipe.trainer.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v
                     for v in views]  # fmt: skip
        return views

    method = _unwrapped(runner)
    num_items = None  # token-level LMs: predicted tokens of the whole step, all ranks
    if isinstance(method, TokenLevelLM):
        # Every micro-batch's summed token loss is divided by the predicted tokens of the whole
        # step on every rank, so accumulation and data parallelism give the gradient of one big
        # batch's per-token mean (ssl_models.text.accumulation); the world size factor undoes
        # the gradient averaging of DDP and FSDP.
        loaded = [load(a) for a in range(accum)]
        num_items = total_loss_tokens(method, loaded, ctx.device)
    total = torch.zeros((), device=ctx.device)
    for a in range(accum):
        batch_views = load(a) if num_items is None else loaded[a]
        last = a == accum - 1
        if accum > 1:
            set_gradient_sync(runner, last)
        sync = (
            contextlib.nullcontext()
            if last or not isinstance(runner, DistributedDataParallel)
            else runner.no_sync()
        )
        with sync:
            with phase("forward"), autocast:
                if num_items is not None:
                    share = runner(batch_views, num_items_in_batch=num_items) * ctx.world_size
                else:
                    share = runner(batch_views) / accum
            with phase("backward"):
                scaler.scale(share).backward()
        total += share.detach().float()
    return total


def _unwrapped(runner: torch.nn.Module) -> torch.nn.Module:
    """The method inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(runner, "module", None) or getattr(runner, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            return runner
        runner = inner


@contextlib.contextmanager
def _no_phase(name: str) -> Iterator[None]:
    yield


def reduce_step(loss: torch.Tensor, stop: bool, ctx: DistContext) -> tuple[float, bool]:
    """Mean loss over ranks, and whether any rank asked to stop, in one all-reduce.

    Every rank then takes the same decisions (skip a non-finite step, stop after a signal that
    reached only some ranks), so none waits forever in a collective the others left.
    """
    if ctx.world_size == 1:
        return loss.item(), stop
    packed = torch.stack([loss.detach().float(), torch.tensor(float(stop), device=loss.device)])
    dist.all_reduce(packed)
    return (packed[0] / ctx.world_size).item(), bool(packed[1].item() > 0)


def broadcast_flag(flag: bool, ctx: DistContext) -> bool:
    """Rank 0's value of ``flag`` on every rank (rank 0 alone evaluates)."""
    if ctx.world_size == 1:
        return flag
    t = torch.tensor([float(flag)], device=ctx.device)
    dist.broadcast(t, 0)
    return bool(t.item() > 0)
