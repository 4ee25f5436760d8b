"""Masked language modelling (BERT, Devlin et al., 2018, arXiv:1810.04805)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_models.losses._precision import float32_region, upcast
from ssl_models.text.base import IGNORE_INDEX, TextBatch, TokenLevelLM
from ssl_models.text.lm_head import TiedLMHead


class MaskedLM(TokenLevelLM):
    """Encoder -> tied MLM head -> cross-entropy at the masked positions only.

    The batch comes masked from the data side (ssl-data's ``MLMMasking``): ``input_ids`` with the
    80/10/10 replacements applied, ``labels`` holding the original id at the selected positions
    and -100 everywhere else. Only positions with a label count: the loss is the sum of their
    negative log-likelihoods divided by their number (or by ``num_items_in_batch``).

    Args:
        encoder: A bidirectional text encoder with ``word_embeddings``
            (:class:`~ssl_models.text.BertEncoder`).
        pooling: Sentence-embedding pooling for :meth:`embed` (None keeps the encoder's).

    Batch:
        ``input_ids (B, L) int64``, ``attention_mask (B, L)``, ``labels (B, L) int64``.

    Raises:
        TypeError: The encoder has no ``word_embeddings`` / ``forward_features``.

    Reference: Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language
    Understanding", arXiv:1810.04805, section 3.1 (task #1) and appendix A.1.
    """

    def __init__(self, encoder: nn.Module, pooling: str | None = None) -> None:
        super().__init__(encoder, pooling)
        embedding = getattr(encoder, "word_embeddings", None)
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"MaskedLM needs an encoder with word_embeddings, got {type(encoder)}")
        self.lm_head = TiedLMHead(self.embedding_dim, embedding)

    def logits(self, batch: TextBatch) -> torch.Tensor:
        """``(B, L, V) float32`` vocabulary logits at every position."""
        input_ids, mask, _ = self.batch_tensors(batch)
        logits: torch.Tensor = self.lm_head(self.text_encoder.forward_features(input_ids, mask))
        return logits

    def num_loss_tokens(self, batch: TextBatch) -> int:
        """Masked positions in ``batch`` (labels != -100)."""
        _, _, labels = self.batch_tensors(batch, labels=True)
        assert labels is not None
        return int((labels != IGNORE_INDEX).sum())

    def loss_sum(self, batch: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy over masked positions and their count.

        Only the masked positions go through the vocabulary projection (the others would cost
        ``V`` logits each for nothing).

        Returns:
            Scalar float32 sum, scalar int64 count.

        Raises:
            KeyError: No ``labels``.
            ValueError: A label outside ``[0, V)`` other than -100.
        """
        input_ids, mask, labels = self.batch_tensors(batch, labels=True)
        assert labels is not None
        selected = labels != IGNORE_INDEX
        targets = labels[selected]
        vocab = self.lm_head.embedding.num_embeddings
        if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= vocab):
            raise ValueError(f"labels must be -100 or ids in [0, {vocab}), got an id outside")
        hidden = self.text_encoder.forward_features(input_ids, mask)[selected]
        logits = self.lm_head(hidden)
        with float32_region(logits):
            total = F.cross_entropy(upcast(logits), targets, reduction="sum")
        return total, selected.sum()
