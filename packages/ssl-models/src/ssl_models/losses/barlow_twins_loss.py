"""Barlow Twins: drive the cross-correlation matrix of two views' embeddings to the identity."""

from __future__ import annotations

import torch
from torch import nn

from ssl_models import distributed
from ssl_models.losses._precision import float32_region, upcast


class BarlowTwinsLoss(nn.Module):
    """``sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2`` with ``C`` the cross-correlation of
    the batch-normalised embeddings of the two views.

    Each view is normalised over the batch, per dimension, as a ``BatchNorm1d(affine=False)`` in
    training mode does: ``(z - mean) / sqrt(var + eps)`` with the biased variance. Then
    ``C = z_a_norm^T z_b_norm / N`` is ``(D, D)``. Computed in float32 (float64 stays float64), autocast disabled.

    With ``gather_distributed=True`` the batch statistics and ``C`` are over the global batch
    (N = world size x B), gathered from all ranks; every rank returns that same global loss, and
    with DDP's gradient averaging the parameter gradients equal single-process ones (see
    :mod:`ssl_models.distributed`).

    Args:
        lambda_param: Weight of the redundancy-reduction (off-diagonal) term; 5e-3 in the paper.
        eps: Added to the variance in the batch normalisation (BatchNorm1d's default, 1e-5).
        gather_distributed: Normalise and correlate over all ranks' samples when
            ``torch.distributed`` is initialised.

    Shape:
        ``z_a``, ``z_b``: ``(B, D)`` float (any float dtype), N >= 2. Output: scalar float32.

    Raises:
        ValueError: ``lambda_param`` negative, ``eps`` not positive, shapes differ, or N < 2.

    Reference: Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy
    Reduction", arXiv:2103.03230, eq. (1)-(2) and Algorithm 1.
    """

    def __init__(
        self, lambda_param: float = 5e-3, eps: float = 1e-5, gather_distributed: bool = False
    ) -> None:
        super().__init__()
        if lambda_param < 0:
            raise ValueError(f"lambda_param must be >= 0, got {lambda_param}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.lambda_param = lambda_param
        self.eps = eps
        self.gather_distributed = gather_distributed

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        if z_a.shape != z_b.shape or z_a.ndim != 2:
            raise ValueError(
                f"z_a and z_b must both be (B, D), got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
            )
        with float32_region(z_a):
            a, b = upcast(z_a), upcast(z_b)
            if self.gather_distributed and distributed.world_size() > 1:
                a, b = distributed.gather(a), distributed.gather(b)
            n, d = a.shape
            if n < 2:
                raise ValueError(f"Barlow Twins needs a batch of at least 2 samples, got {n}")
            c = self._batch_norm(a).T @ self._batch_norm(b) / n
            on_diagonal = (torch.diagonal(c) - 1).pow(2).sum()
            off_mask = ~torch.eye(d, dtype=torch.bool, device=c.device)
            off_diagonal = c[off_mask].pow(2).sum()
            return on_diagonal + self.lambda_param * off_diagonal

    def _batch_norm(self, z: torch.Tensor) -> torch.Tensor:
        mean = z.mean(dim=0)
        var = z.var(dim=0, unbiased=False)
        return (z - mean) / torch.sqrt(var + self.eps)
