"""SimCLR (Chen et al., 2020, arXiv:2002.05709)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ssl_models.heads import ProjectionHead
from ssl_models.losses import NTXentLoss
from ssl_models.methods.base import SSLMethod


class SimCLR(SSLMethod):
    """Encoder -> projection head -> NT-Xent between two augmented views of each image.

    Args:
        encoder: Backbone with ``output_dim``.
        projection_hidden_dim: Hidden width of the projection head.
        projection_dim: Output width of the projection head (128 in the paper).
        temperature: NT-Xent temperature (0.5 in the paper's CIFAR-10 setting).
        gather_distributed: Negatives from all ranks under ``torch.distributed`` (the paper's
            global batch); see :class:`~ssl_models.losses.NTXentLoss`.

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of Visual
    Representations", arXiv:2002.05709.
    """

    num_views = 2

    def __init__(
        self,
        encoder: nn.Module,
        projection_hidden_dim: int = 512,
        projection_dim: int = 128,
        temperature: float = 0.5,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(encoder)
        self.projection_head = ProjectionHead(
            self.embedding_dim, projection_hidden_dim, projection_dim, num_layers=2
        )
        self.criterion = NTXentLoss(temperature, gather_distributed=gather_distributed)

    def training_loss(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """NT-Xent of the projected views; one encoder pass over both views (shared BN stats).

        Args:
            views: Two ``(B, C, H, W)`` float tensors.

        Returns:
            Scalar float32 loss.
        """
        self._check_views(views)
        b = views[0].shape[0]
        z = self.projection_head(self.encoder(torch.cat(list(views))))
        return self.criterion(z[:b], z[b:])
