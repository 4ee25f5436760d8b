"""BYOL (Grill et al., 2020, arXiv:2006.07733)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ssl_models.heads import PredictionHead, ProjectionHead
from ssl_models.losses import BYOLLoss
from ssl_models.methods.momentum_base import MomentumSchedule, MomentumSSLMethod


class BYOL(MomentumSSLMethod):
    """Online encoder -> projector -> predictor regresses the target (momentum) encoder ->
    projector's output of the other view, with :class:`~ssl_models.losses.BYOLLoss`.

    Defaults are the paper's: projector and predictor ``Linear(4096) -> BN -> ReLU ->
    Linear(256)``, target momentum rising from 0.996 to 1 along a cosine.

    Args:
        encoder: Backbone with ``output_dim``.
        projection_hidden_dim: Projector hidden width (4096).
        projection_dim: Projector and predictor output width (256).
        prediction_hidden_dim: Predictor hidden width (4096).
        base_momentum: Target momentum of the first update (0.996).
        momentum_schedule: ``"cosine"`` (the paper) or ``"constant"``.

    Reference: Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised
    Learning", arXiv:2006.07733, sections 3.1-3.3.
    """

    num_views = 2

    def __init__(
        self,
        encoder: nn.Module,
        projection_hidden_dim: int = 4096,
        projection_dim: int = 256,
        prediction_hidden_dim: int = 4096,
        base_momentum: float = 0.996,
        momentum_schedule: MomentumSchedule = "cosine",
    ) -> None:
        super().__init__(encoder, base_momentum, momentum_schedule)
        self.projection_head = ProjectionHead(
            self.embedding_dim, projection_hidden_dim, projection_dim, num_layers=2
        )
        self._init_momentum_branch()
        self.prediction_head = PredictionHead(projection_dim, prediction_hidden_dim)
        self.criterion = BYOLLoss()

    def training_loss(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """``L(p_a, z_b') + L(p_b, z_a')``; each view goes through each network separately.

        Args:
            views: Two ``(B, C, H, W)`` float tensors.

        Returns:
            Scalar float32 loss.
        """
        self._check_views(views)
        p_a, p_b = (self.prediction_head(self.projection_head(self.encoder(v))) for v in views)
        z_a, z_b = (self.momentum_forward(v) for v in views)
        return self.criterion(p_a, p_b, z_a, z_b)
