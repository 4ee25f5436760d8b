"""Causal (next-token) language modelling, as GPT-2 is trained."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_models.losses._precision import float32_region, upcast
from ssl_models.text.base import IGNORE_INDEX, TextBatch, TokenLevelLM
from ssl_models.text.lm_head import TiedLMHead


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """Next-token targets: ``out[:, t] = labels[:, t + 1]``, and -100 at the last position.

    Position t's logits predict the token at t + 1; a -100 at t + 1 (padding, or anything the
    data side excluded) means position t predicts nothing (under right padding: the last token
    -> padding step). Positions that are themselves padding must be masked by the caller
    (:meth:`CausalLM.targets` does): under left padding the last padding position would
    otherwise "predict" the first real token.

    Args:
        labels: ``(B, L) int64`` unshifted labels (ids, -100 where ignored).

    Returns:
        ``(B, L) int64``.
    """
    pad = torch.full_like(labels[:, :1], IGNORE_INDEX)
    return torch.cat([labels[:, 1:], pad], dim=1)


class CausalLM(TokenLevelLM):
    """Decoder -> tied output layer -> next-token cross-entropy (labels shifted inside).

    Labels are the Hugging Face convention: ``labels`` equal ``input_ids`` with -100 where no
    prediction is wanted (ssl-data's ``iter_causal_blocks`` with ``shift_labels=False``); without
    ``labels``, the targets are ``input_ids`` with -100 on padding. :func:`shift_labels` makes
    position t predict token t + 1.

    Args:
        encoder: A causal decoder with ``word_embeddings`` (:class:`~ssl_models.text.GPT2Decoder`);
            a bidirectional encoder would see the token it predicts.
        pooling: Sentence-embedding pooling for :meth:`embed` (None keeps the encoder's).

    Batch:
        ``input_ids (B, L) int64``, ``attention_mask (B, L)``, optional ``labels (B, L) int64``.

    Raises:
        TypeError: The encoder has no ``word_embeddings`` of its output width.

    Reference: Radford et al., "Improving Language Understanding by Generative Pre-Training"
    (GPT, 2018), eq. (1); Radford et al., "Language Models are Unsupervised Multitask Learners"
    (GPT-2, 2019).
    """

    def __init__(self, encoder: nn.Module, pooling: str | None = None) -> None:
        super().__init__(encoder, pooling)
        embedding = getattr(encoder, "word_embeddings", None)
        if not isinstance(embedding, nn.Embedding) or embedding.embedding_dim != self.embedding_dim:
            raise TypeError(
                f"CausalLM needs an encoder whose word_embeddings have its output width "
                f"{self.embedding_dim}, got {type(encoder).__name__}"
            )
        self.lm_head = TiedLMHead(self.embedding_dim, embedding, transform=False, bias=False)

    def targets(self, batch: TextBatch) -> torch.Tensor:
        """``(B, L) int64`` shifted targets (see :func:`shift_labels`), -100 wherever position t
        or t + 1 is padding."""
        input_ids, mask, labels = self.batch_tensors(batch)
        if labels is None:
            labels = input_ids
        # Padding neither is a target nor predicts one (e.g. the last left-padding position).
        return shift_labels(labels.masked_fill(~mask, IGNORE_INDEX)).masked_fill(
            ~mask, IGNORE_INDEX
        )

    def num_loss_tokens(self, batch: TextBatch) -> int:
        """Predicted positions in ``batch`` (shifted targets != -100)."""
        return int((self.targets(batch) != IGNORE_INDEX).sum())

    def loss_sum(self, batch: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed next-token cross-entropy and the number of predicted positions.

        Returns:
            Scalar float32 sum, scalar int64 count.
        """
        input_ids, mask, _ = self.batch_tensors(batch)
        targets = self.targets(batch)
        selected = targets != IGNORE_INDEX
        hidden = self.text_encoder.forward_features(input_ids, mask)[selected]
        logits = self.lm_head(hidden)
        with float32_region(logits):
            total = F.cross_entropy(upcast(logits), targets[selected], reduction="sum")
        return total, selected.sum()
