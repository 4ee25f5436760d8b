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
        views_in_one_pass: Encode both views as one batch of 2B, so batch norm normalises over
            both views (the reference implementation); False encodes each view in its own pass
            of B, with batch-norm statistics per view, as LightlySSL's examples do. On 2 CPU
            cores a small-image ResNet-18 forward + backward took 4-8% less time as two passes
            of 256 than as one of 512 (``bench/encoder_batch_split.py``).

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
        views_in_one_pass: bool = True,
    ) -> None:
        super().__init__(encoder)
        self.projection_head = ProjectionHead(
            self.embedding_dim, projection_hidden_dim, projection_dim, num_layers=2
        )
        self.criterion = NTXentLoss(temperature, gather_distributed=gather_distributed)
        self.views_in_one_pass = views_in_one_pass

    def training_loss(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """NT-Xent of the projected views (one encoder pass over both, or one per view: see
        ``views_in_one_pass``).

        Args:
            views: Two ``(B, C, H, W)`` float tensors.

        Returns:
            Scalar float32 loss.
        """
        self._check_views(views)
        if not self.views_in_one_pass:
            z0, z1 = (self.projection_head(self.encoder(v)) for v in views)
            return self.criterion(z0, z1)
        b = views[0].shape[0]
        z = self.projection_head(self.encoder(torch.cat(list(views))))
        return self.criterion(z[:b], z[b:])
