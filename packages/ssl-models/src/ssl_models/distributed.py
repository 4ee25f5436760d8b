"""torch.distributed helpers for objectives that need the global batch (all ranks' samples).

Every helper is a no-op when ``torch.distributed`` is unavailable, not initialised, or has a single
process, so the same loss code runs unchanged in one process and under DDP.

Gradient convention (used by every ``gather_distributed`` loss in :mod:`ssl_models.losses`): DDP
*averages* parameter gradients over the W ranks. :func:`gather` therefore *sums* the gradients
that all ranks send back to each rank's slice, and each rank's loss is chosen so that the mean of
the W per-rank losses equals the single-process loss on the global batch. Then the gradient of a
rank's own inputs is W times the single-process gradient of that slice, and DDP's average over
ranks gives exactly the single-process parameter gradient.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """Whether ``torch.distributed`` is available and initialised."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank in the default group (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGradient(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums every rank's gradient of this rank's slice.

    Built on the stable collectives ``all_gather`` and ``all_reduce``
    (``torch.distributed.nn.functional.all_gather`` has the same gradient but is deprecated in
    recent torch releases).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        ctx.batch_size = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.batch_size
        return grad[start : start + ctx.batch_size]


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0, in rank order, with gradients.

    Rows ``rank() * B`` to ``(rank() + 1) * B`` of the result are this rank's ``x``. In the
    backward pass each rank receives the sum, over all ranks, of the gradient of its own slice
    (see the module docstring for why this matches DDP's gradient averaging). Every rank must call
    it with the same shape (e.g. a ``DistributedSampler`` with ``drop_last=True``) and must run the
    backward pass.

    Args:
        x: ``(B, ...)`` tensor, the same shape and dtype on every rank.

    Returns:
        ``(world_size() * B, ...)`` tensor; ``x`` itself when not distributed or world size 1.
    """
    if world_size() == 1:
        return x
    return _GatherWithGradient.apply(x)


@torch.no_grad()
def batch_shuffle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Shuffle a batch across ranks: MoCo's shuffling batch norm for the key encoder.

    All ranks' ``x`` are gathered (rank order), rank 0 draws a permutation of the global batch
    with the global torch RNG (so exact resume restores it) and broadcasts it, and each rank keeps
    its slice of the permuted batch. Batch-norm statistics of the key encoder are then computed
    over samples that mostly come from other ranks, so a query and its key never share them
    (the "cheating" of He et al., arXiv:1911.05722, Sec. 3.3). No gradient flows.

    Args:
        x: ``(B, ...)`` tensor, the same shape on every rank.

    Returns:
        ``(shuffled, unshuffle)``: this rank's ``(B, ...)`` slice of the permuted global batch and
        the inverse permutation ``(W * B,)`` int64 for :func:`batch_unshuffle`; ``(x, None)``
        when not distributed or world size 1.
    """
    w = world_size()
    if w == 1:
        return x, None
    parts = [torch.empty_like(x) for _ in range(w)]
    dist.all_gather(parts, x.contiguous())
    n = x.shape[0]
    perm = (
        torch.randperm(w * n, device=x.device)
        if rank() == 0
        else torch.empty(w * n, dtype=torch.int64, device=x.device)
    )
    dist.broadcast(perm, src=0)
    mine = perm[rank() * n : (rank() + 1) * n]
    return torch.cat(parts)[mine], torch.argsort(perm)


@torch.no_grad()
def batch_unshuffle(y: torch.Tensor, unshuffle: torch.Tensor | None) -> torch.Tensor:
    """Undo :func:`batch_shuffle` on its outputs: this rank's ``(B, ...)`` rows, original order.

    Args:
        y: ``(B, ...)`` outputs for the rank's shuffled slice.
        unshuffle: The inverse permutation :func:`batch_shuffle` returned (``None``: no-op).

    Returns:
        ``(B, ...)``: row i is the output for row i of the ``x`` this rank passed in.
    """
    if unshuffle is None:
        return y
    parts = [torch.empty_like(y) for _ in range(world_size())]
    dist.all_gather(parts, y.contiguous())
    n = y.shape[0]
    return torch.cat(parts)[unshuffle[rank() * n : (rank() + 1) * n]]


__all__ = ["batch_shuffle", "batch_unshuffle", "gather", "is_distributed", "rank", "world_size"]
