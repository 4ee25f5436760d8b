"""Barlow Twins (Zbontar et al., 2021, arXiv:2103.03230)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ssl_models.heads import ProjectionHead
from ssl_models.losses import BarlowTwinsLoss
from ssl_models.methods.base import SSLMethod


class BarlowTwins(SSLMethod):
    """Encoder -> projector for both views, and the cross-correlation objective
    (:class:`~ssl_models.losses.BarlowTwinsLoss`).

    Defaults are the paper's: a 3-layer projector 8192 wide (hidden and output, no bias on the
    last layer) and lambda = 5e-3. The paper shows wider projectors work better; on a CPU use e.g.
    ``projection_hidden_dim=projection_dim=512``.

    Args:
        encoder: Backbone with ``output_dim``.
        projection_hidden_dim: Projector hidden width (8192).
        projection_dim: Projector output width (8192).
        lambda_param: Weight of the off-diagonal term (5e-3).
        gather_distributed: Cross-correlation over all ranks' samples under ``torch.distributed``.

    Reference: Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy
    Reduction", arXiv:2103.03230, sections 2-3.
    """

    num_views = 2

    def __init__(
        self,
        encoder: nn.Module,
        projection_hidden_dim: int = 8192,
        projection_dim: int = 8192,
        lambda_param: float = 5e-3,
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
        self.criterion = BarlowTwinsLoss(lambda_param, gather_distributed=gather_distributed)

    def training_loss(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """The Barlow Twins loss of the two projected views (each view through separately).

        Args:
            views: Two ``(B, C, H, W)`` float tensors.

        Returns:
            Scalar float32 loss.
        """
        self._check_views(views)
        z_a, z_b = (self.projection_head(self.encoder(v)) for v in views)
        return self.criterion(z_a, z_b)
