"""Unsupervised SimCSE (Gao et al., 2021, arXiv:2104.08821)."""

from __future__ import annotations

import torch
from torch import nn

from ssl_models.text.base import TextBatch, TextSSLMethod
from ssl_models.text.pooling import pool_tokens
from ssl_models.text.simcse_loss import SimCSELoss


class SimCSE(TextSSLMethod):
    """The same sentences twice through the encoder; the two dropout masks make the two views.

    Both passes run in one forward of the batch stacked on itself (``(2B, L)``), so each row gets
    its own dropout mask. The pooled output goes through an MLP pooler (dense + tanh, the paper's
    training-time head) before :class:`SimCSELoss`; :meth:`embed` uses the pooled output without
    it, as the paper does for unsupervised SimCSE at test time. The encoder's dropout must be
    above zero, or the two views are identical and the loss cannot teach anything.

    Args:
        encoder: A text encoder (e.g. :class:`~ssl_models.text.BertEncoder`, dropout 0.1).
        temperature: InfoNCE temperature (0.05).
        pooling: ``"cls"`` (the paper's) or ``"mean"``/``"max"``; None keeps the encoder's.
        mlp_pooler: Train through the dense + tanh pooler.
        gather_distributed: Negatives from all ranks (see :class:`SimCSELoss`).

    Batch:
        ``input_ids (B, L) int64``, ``attention_mask (B, L)``; B >= 2.

    Reference: Gao, Yao and Chen, "SimCSE: Simple Contrastive Learning of Sentence Embeddings",
    arXiv:2104.08821, section 3.
    """

    def __init__(
        self,
        encoder: nn.Module,
        temperature: float = 0.05,
        pooling: str | None = "cls",
        mlp_pooler: bool = True,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(encoder, pooling)
        d = self.embedding_dim
        self.pooler = nn.Sequential(nn.Linear(d, d), nn.Tanh()) if mlp_pooler else nn.Identity()
        self.criterion = SimCSELoss(temperature, gather_distributed=gather_distributed)

    def training_loss(  # type: ignore[override]
        self, batch: TextBatch, num_items_in_batch: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        """SimCSE loss of one batch (``num_items_in_batch`` is not used: the loss is a mean over
        sentences, each of which sees only its own batch's negatives).

        Returns:
            Scalar float32 loss.
        """
        input_ids, mask, _ = self.batch_tensors(batch)
        b = input_ids.shape[0]
        ids2, mask2 = torch.cat([input_ids, input_ids]), torch.cat([mask, mask])
        hidden = self.text_encoder.forward_features(ids2, mask2)
        z = self.pooler(pool_tokens(hidden, mask2, self.pooling))
        return self.criterion(z[:b], z[b:])
