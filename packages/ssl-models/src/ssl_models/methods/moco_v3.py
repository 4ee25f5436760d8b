"""MoCo v3 (Chen, Xie and He, 2021, arXiv:2104.02057)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ssl_models.heads import PredictionHead, ProjectionHead
from ssl_models.losses import MoCoV3Loss
from ssl_models.methods.momentum_base import MomentumSchedule, MomentumSSLMethod


class MoCoV3(MomentumSSLMethod):
    """Encoder -> projector -> predictor against a momentum encoder -> projector, with the
    symmetrised in-batch contrastive loss (:class:`~ssl_models.losses.MoCoV3Loss`).

    Defaults are the paper's: a 3-layer projector (hidden 4096, output 256, batch norm on every
    layer including the output), a 2-layer predictor (hidden 4096), temperature 0.2, and momentum
    rising from 0.99 to 1 along a cosine.

    Args:
        encoder: Backbone with ``output_dim``.
        projection_hidden_dim: Projector hidden width (4096).
        projection_dim: Projector and predictor output width (256).
        projection_layers: Projector depth (3).
        prediction_hidden_dim: Predictor hidden width (4096).
        temperature: Contrastive temperature (0.2).
        base_momentum: Momentum of the first update (0.99).
        momentum_schedule: ``"cosine"`` (the paper) or ``"constant"``.
        gather_distributed: Keys from all ranks under ``torch.distributed``.

    Reference: Chen, Xie and He, "An Empirical Study of Training Self-Supervised Vision
    Transformers", arXiv:2104.02057, Algorithm 1 and section 4.
    """

    num_views = 2

    def __init__(
        self,
        encoder: nn.Module,
        projection_hidden_dim: int = 4096,
        projection_dim: int = 256,
        projection_layers: int = 3,
        prediction_hidden_dim: int = 4096,
        temperature: float = 0.2,
        base_momentum: float = 0.99,
        momentum_schedule: MomentumSchedule = "cosine",
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(encoder, base_momentum, momentum_schedule)
        self.projection_head = ProjectionHead(
            self.embedding_dim,
            projection_hidden_dim,
            projection_dim,
            num_layers=projection_layers,
            batch_norm_last=True,
        )
        self._init_momentum_branch()
        self.prediction_head = PredictionHead(projection_dim, prediction_hidden_dim)
        self.criterion = MoCoV3Loss(temperature, gather_distributed=gather_distributed)

    def training_loss(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """``ctr(q_a, k_b) + ctr(q_b, k_a)``; each view goes through each encoder separately.

        Args:
            views: Two ``(B, C, H, W)`` float tensors.

        Returns:
            Scalar float32 loss.
        """
        self._check_views(views)
        q_a, q_b = (self.prediction_head(self.projection_head(self.encoder(v))) for v in views)
        k_a, k_b = (self.momentum_forward(v) for v in views)
        return self.criterion(q_a, q_b, k_a, k_b)
