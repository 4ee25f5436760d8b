"""SimSiam (Chen and He, 2020, arXiv:2011.10566)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ssl_models.heads import PredictionHead, ProjectionHead
from ssl_models.losses import SimSiamLoss
from ssl_models.methods.base import SSLMethod


class SimSiam(SSLMethod):
    """One encoder -> projector for both views, a predictor on top, and the symmetrised negative
    cosine with stop-gradient on the projections (:class:`~ssl_models.losses.SimSiamLoss`). No
    momentum encoder and no negatives.

    Defaults are the paper's: a 3-layer projector (hidden and output 2048, batch norm on the
    output) and a bottleneck predictor 2048 -> 512 -> 2048. Watch
    :func:`ssl_models.losses.collapse_std` of the projections to detect collapse.

    Args:
        encoder: Backbone with ``output_dim``.
        projection_hidden_dim: Projector hidden width (2048).
        projection_dim: Projector and predictor output width (2048).
        prediction_hidden_dim: Predictor hidden width (512).

    Reference: Chen and He, "Exploring Simple Siamese Representation Learning",
    arXiv:2011.10566, section 3 and Algorithm 1.
    """

    num_views = 2

    def __init__(
        self,
        encoder: nn.Module,
        projection_hidden_dim: int = 2048,
        projection_dim: int = 2048,
        prediction_hidden_dim: int = 512,
    ) -> None:
        super().__init__(encoder)
        self.projection_head = ProjectionHead(
            self.embedding_dim,
            projection_hidden_dim,
            projection_dim,
            num_layers=3,
            batch_norm_last=True,
        )
        self.prediction_head = PredictionHead(projection_dim, prediction_hidden_dim)
        self.criterion = SimSiamLoss()

    def training_loss(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """``D(p_a, sg(z_b)) / 2 + D(p_b, sg(z_a)) / 2``; each view goes through separately.

        Args:
            views: Two ``(B, C, H, W)`` float tensors.

        Returns:
            Scalar float32 loss in ``[-1, 1]``.
        """
        self._check_views(views)
        z_a, z_b = (self.projection_head(self.encoder(v)) for v in views)
        return self.criterion(self.prediction_head(z_a), self.prediction_head(z_b), z_a, z_b)
