"""Batch norm whose statistics span every rank, on any device (CPU included)."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of a sum is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        out = grad.contiguous().clone()
        dist.all_reduce(out)
        return out


class DistributedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation over the union of all ranks' batches (synchronised BN).

    ``torch.nn.SyncBatchNorm`` runs only on GPUs; this layer all-reduces the per-channel count,
    sum and sum of squares (differentiably, so gradients also flow through the global
    statistics) with whatever backend the process group uses, gloo on CPU included. With one
    process, or in eval mode, it is exactly ``BatchNorm{1,2,3}d``. The variance is computed as
    E[x²] − E[x]², which agrees with one process on the whole batch to float rounding.

    Shape:
        ``(B, C)``, ``(B, C, L)``, ``(B, C, H, W)`` or ``(B, C, D, H, W)``; output the same.

    Reference: Ioffe & Szegedy, arXiv:1502.03167; synchronised BN as in Peng et al. (MegDet),
    arXiv:1711.07240.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.ndim < 2:
            raise ValueError(f"expected (B, C, ...) input, got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not (self.training and distributed):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.ndim)]
        xf = x.float()
        count = torch.full((1,), xf.numel() / xf.shape[1], dtype=torch.float32, device=x.device)
        stats = torch.cat([xf.sum(dims), (xf * xf).sum(dims), count])
        stats = _AllReduceSum.apply(stats)
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0)
        if (
            self.track_running_stats
            and self.running_mean is not None
            and self.running_var is not None
        ):
            with torch.no_grad():
                tracked = self.num_batches_tracked
                if tracked is not None:
                    tracked.add_(1)
                if self.momentum is not None:
                    m = self.momentum
                else:  # cumulative moving average, as BatchNorm does with momentum=None
                    m = 1.0 / float(tracked) if tracked is not None else 0.0
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1).clamp_min(1))
        shape = (1, c) + (1,) * (x.ndim - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_to_distributed_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm{1,2,3}d`` in ``module`` by :class:`DistributedBatchNorm`.

    Like ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``, the new layers reuse the original
    parameter and buffer objects, so an optimiser built before the conversion, frozen
    (``requires_grad=False``) momentum networks and the state-dict keys are all unchanged.

    Returns:
        The converted module (a new object only when ``module`` itself is a batch norm).
    """
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, DistributedBatchNorm
    ):
        new = DistributedBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        for name, param in module.named_parameters(recurse=False):
            setattr(new, name, param)
        for name, buf in module.named_buffers(recurse=False):
            setattr(new, name, buf)
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_to_distributed_batchnorm(child))
    return module
