"""MoCo v2 (Chen et al., 2020, arXiv:2003.04297)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ssl_models.distributed import batch_shuffle, batch_unshuffle
from ssl_models.heads import ProjectionHead
from ssl_models.losses import InfoNCEQueueLoss
from ssl_models.methods.momentum_base import MomentumSchedule, MomentumSSLMethod


class MoCoV2(MomentumSSLMethod):
    """Query encoder + MLP head against a momentum key encoder, InfoNCE over a queue of keys.

    View 0 gives the queries (online encoder and head), view 1 the keys (momentum encoder and
    head, no gradient); the loss is :class:`~ssl_models.losses.InfoNCEQueueLoss`, after which the
    keys are enqueued. Defaults are the paper's: MLP head ``Linear(D, D) -> ReLU -> Linear(D,
    128)`` without batch norm (D = encoder width), K = 65536, temperature 0.2, constant momentum
    0.999. Under ``torch.distributed`` the key batch is shuffled across ranks before the momentum
    encoder and unshuffled after it (shuffling BN, arXiv:1911.05722 Sec. 3.3;
    :func:`ssl_models.distributed.batch_shuffle`), so batch-norm statistics never pair a query
    with its own key; in one process the key batch is encoded as it is.

    Args:
        encoder: Backbone with ``output_dim``.
        projection_hidden_dim: Hidden width of the head; ``None`` means the encoder width.
        projection_dim: Output width of the head (128).
        queue_size: Number of negative keys K (65536; it must be at least the global batch).
        temperature: InfoNCE temperature (0.2).
        base_momentum: Key encoder momentum (0.999).
        momentum_schedule: ``"constant"`` (the paper) or ``"cosine"`` (rising to 1).
        gather_distributed: Enqueue the keys of all ranks under ``torch.distributed``.
        shuffle_batch_norm: Shuffle the key batch across ranks (no effect in one process; turn
            it off when the batch norms are synchronised anyway).

    Reference: Chen, Fan, Girshick and He, "Improved Baselines with Momentum Contrastive
    Learning", arXiv:2003.04297; He et al., arXiv:1911.05722, Algorithm 1.
    """

    num_views = 2

    def __init__(
        self,
        encoder: nn.Module,
        projection_hidden_dim: int | None = None,
        projection_dim: int = 128,
        queue_size: int = 65536,
        temperature: float = 0.2,
        base_momentum: float = 0.999,
        momentum_schedule: MomentumSchedule = "constant",
        gather_distributed: bool = False,
        shuffle_batch_norm: bool = True,
    ) -> None:
        super().__init__(encoder, base_momentum, momentum_schedule)
        hidden = self.embedding_dim if projection_hidden_dim is None else projection_hidden_dim
        self.projection_head = ProjectionHead(
            self.embedding_dim, hidden, projection_dim, num_layers=2, batch_norm=False
        )
        self._init_momentum_branch()
        self.shuffle_batch_norm = shuffle_batch_norm
        self.criterion = InfoNCEQueueLoss(
            projection_dim, queue_size, temperature, gather_distributed=gather_distributed
        )

    def training_loss(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """InfoNCE of view-0 queries against view-1 keys and the queue; enqueues the keys.

        Args:
            views: Two ``(B, C, H, W)`` float tensors.

        Returns:
            Scalar float32 loss.
        """
        self._check_views(views)
        q = self.projection_head(self.encoder(views[0]))
        return self.criterion(q, self.keys(views[1]))

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """Momentum-branch keys ``(B, projection_dim)`` of ``x``, with shuffling BN across ranks."""
        if not self.shuffle_batch_norm:
            return self.momentum_forward(x)
        shuffled, unshuffle = batch_shuffle(x)
        return batch_unshuffle(self.momentum_forward(shuffled), unshuffle)
