"""VICReg: variance-invariance-covariance regularisation of two views' embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_models import distributed
from ssl_models.losses._precision import float32_region, upcast


class VICRegLoss(nn.Module):
    """``lambda * s(Z_a, Z_b) + mu * (v(Z_a) + v(Z_b)) / 2 + nu * (c(Z_a) + c(Z_b))``.

    - invariance ``s``: mean squared error over all ``B x D`` entries;
    - variance ``v(Z) = mean_j max(0, 1 - sqrt(Var(z_j) + eps))`` (unbiased variance over the
      batch, per dimension j);
    - covariance ``c(Z) = sum_{i != j} Cov(Z)_ij^2 / D`` (unbiased covariance over the batch).

    The scaling of each term follows the authors' released implementation, with which the default
    weights 25/25/1 were tuned: it averages the two variance terms (eq. (6) of the paper sums them)
    and takes the mean over entries in ``s`` (the paper's eq. (5) divides by B only). Computed in
    float32 (float64 stays float64), autocast disabled.

    With ``gather_distributed=True`` the variance and covariance are over the global batch
    (gathered from all ranks) while the invariance term stays local (its mean over ranks is the
    global mean); the mean of the per-rank losses is the single-process loss and DDP's gradient
    average equals the single-process gradient (see :mod:`ssl_models.distributed`).

    Args:
        lambda_param: Invariance weight (25 in the paper).
        mu_param: Variance weight (25).
        nu_param: Covariance weight (1).
        eps: Added to the variance before the square root (1e-4).
        gather_distributed: Variance and covariance over all ranks' samples when
            ``torch.distributed`` is initialised.

    Shape:
        ``z_a``, ``z_b``: ``(B, D)`` float (any float dtype), global batch >= 2. Output: scalar
        float32.

    Raises:
        ValueError: A weight negative, ``eps`` not positive, shapes differ, or a batch below 2.

    Reference: Bardes, Ponce and LeCun, "VICReg: Variance-Invariance-Covariance Regularization
    for Self-Supervised Learning", arXiv:2105.04906, eq. (1)-(6) and Algorithm 1.
    """

    def __init__(
        self,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        eps: float = 1e-4,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        if min(lambda_param, mu_param, nu_param) < 0:
            raise ValueError(
                f"weights must be >= 0, got lambda={lambda_param}, mu={mu_param}, nu={nu_param}"
            )
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.lambda_param = lambda_param
        self.mu_param = mu_param
        self.nu_param = nu_param
        self.eps = eps
        self.gather_distributed = gather_distributed

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        if z_a.shape != z_b.shape or z_a.ndim != 2:
            raise ValueError(
                f"z_a and z_b must both be (B, D), got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
            )
        with float32_region(z_a):
            a, b = upcast(z_a), upcast(z_b)
            invariance = F.mse_loss(a, b)
            if self.gather_distributed and distributed.world_size() > 1:
                a, b = distributed.gather(a), distributed.gather(b)
            if a.shape[0] < 2:
                raise ValueError(f"VICReg needs a batch of at least 2 samples, got {a.shape[0]}")
            variance = 0.5 * (self._variance(a) + self._variance(b))
            covariance = self._covariance(a) + self._covariance(b)
            return (
                self.lambda_param * invariance
                + self.mu_param * variance
                + self.nu_param * covariance
            )

    def _variance(self, z: torch.Tensor) -> torch.Tensor:
        std = torch.sqrt(z.var(dim=0) + self.eps)
        return F.relu(1 - std).mean()

    @staticmethod
    def _covariance(z: torch.Tensor) -> torch.Tensor:
        n, d = z.shape
        z = z - z.mean(dim=0)
        cov = z.T @ z / (n - 1)
        off_mask = ~torch.eye(d, dtype=torch.bool, device=z.device)
        return cov[off_mask].pow(2).sum() / d
