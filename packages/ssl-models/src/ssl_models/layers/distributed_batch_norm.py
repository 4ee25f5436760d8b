"""Batch norm whose statistics span every rank, on any device (CPU included)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import nn


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
        stats = dist_nn.all_reduce(stats)
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
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
                m = (
                    self.momentum
                    if self.momentum is not None
                    else 1.0 / float(self.num_batches_tracked)
                )
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1).clamp_min(1))
        shape = (1, c) + (1,) * (x.ndim - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_to_distributed_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm{1,2,3}d`` in ``module`` by :class:`DistributedBatchNorm`,
    keeping weights, biases and running statistics. Returns the (possibly new) module.
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
        state = module.state_dict()
        new.load_state_dict(state)
        new.train(module.training)
        devices = {t.device for t in state.values()}
        return new.to(devices.pop()) if devices else new
    for name, child in module.named_children():
        module.add_module(name, convert_to_distributed_batchnorm(child))
    return module
