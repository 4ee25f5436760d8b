"""VICReg (Bardes, Ponce and LeCun, 2021, arXiv:2105.04906)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ssl_models.heads import ProjectionHead
from ssl_models.losses import VICRegLoss
from ssl_models.methods.base import SSLMethod


class VICReg(SSLMethod):
    """Encoder -> expander (projector) for both views, and the variance-invariance-covariance
    objective (:class:`~ssl_models.losses.VICRegLoss`).

    Defaults are the paper's: a 3-layer expander 8192 wide (no bias on the last layer) and
    weights lambda = mu = 25, nu = 1. On a CPU use a narrower expander (e.g. 512).

    Args:
        encoder: Backbone with ``output_dim``.
        projection_hidden_dim: Expander hidden width (8192).
        projection_dim: Expander output width (8192).
        lambda_param: Invariance weight (25).
        mu_param: Variance weight (25).
        nu_param: Covariance weight (1).
        gather_distributed: Variance and covariance over all ranks' samples under
            ``torch.distributed``.

    Reference: Bardes, Ponce and LeCun, "VICReg: Variance-Invariance-Covariance Regularization
    for Self-Supervised Learning", arXiv:2105.04906, sections 3-4.
    """

    num_views = 2

    def __init__(
        self,
        encoder: nn.Module,
        projection_hidden_dim: int = 8192,
        projection_dim: int = 8192,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(encoder)
        self.projection_head = ProjectionHead(
            self.embedding_dim,
            projection_hidden_dim,
            projection_dim,
            num_layers=3,
            bias_last=False,
        )
        self.criterion = VICRegLoss(
            lambda_param, mu_param, nu_param, gather_distributed=gather_distributed
        )

    def training_loss(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """The VICReg loss of the two expanded views (each view through separately).

        Args:
            views: Two ``(B, C, H, W)`` float tensors.

        Returns:
            Scalar float32 loss.
        """
        self._check_views(views)
        z_a, z_b = (self.projection_head(self.encoder(v)) for v in views)
        return self.criterion(z_a, z_b)
