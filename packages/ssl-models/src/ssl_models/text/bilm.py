"""Bidirectional language model pretraining of a recurrent encoder (ELMo, arXiv:1802.05365)."""

from __future__ import annotations

from typing import Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from ssl_models.losses._precision import float32_region, upcast
from ssl_models.text.base import IGNORE_INDEX, TextBatch, TokenLevelLM


class _BiEncoder(Protocol):
    hidden_size: int
    vocab_size: int

    def forward_directions(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...


def bilm_targets(
    input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of the two directions: the next real token and the previous real token.

    Args:
        input_ids: ``(B, L) int64``.
        attention_mask: ``(B, L)``, nonzero = real token (real tokens contiguous; any side).

    Returns:
        ``(forward, backward)``, each ``(B, L) int64``: ``forward[:, t] = input_ids[:, t + 1]``
        where both t and t + 1 are real, ``backward[:, t] = input_ids[:, t - 1]`` where both t and
        t - 1 are real, -100 elsewhere.
    """
    real = attention_mask.bool()
    ignore = torch.full_like(input_ids[:, :1], IGNORE_INDEX)
    no = torch.zeros_like(real[:, :1])
    nxt = torch.cat([input_ids[:, 1:], ignore], dim=1)
    nxt_real = torch.cat([real[:, 1:], no], dim=1) & real
    prv = torch.cat([ignore, input_ids[:, :-1]], dim=1)
    prv_real = torch.cat([no, real[:, :-1]], dim=1) & real
    return nxt.masked_fill(~nxt_real, IGNORE_INDEX), prv.masked_fill(~prv_real, IGNORE_INDEX)


class BidirectionalLM(TokenLevelLM):
    """ELMo's objective: the forward stack predicts the next token, the backward stack the
    previous one, through one softmax layer shared by both directions; the two negative
    log-likelihoods are summed.

    With ``n`` predicted tokens per direction (equal for both: each row's real length minus one),
    the loss is ``(NLL_forward_sum + NLL_backward_sum) / n``, i.e. the sum of the two per-token
    means, and stays exact under gradient accumulation (``num_items_in_batch``).

    Args:
        encoder: A bidirectional :class:`~ssl_models.text.RecurrentEncoder`.
        pooling: Sentence-embedding pooling for :meth:`embed` (None keeps the encoder's).

    Batch:
        ``input_ids (B, L) int64``, ``attention_mask (B, L)``.

    Raises:
        TypeError: The encoder has no ``forward_directions`` or is not bidirectional.

    Reference: Peters et al., "Deep contextualized word representations", arXiv:1802.05365,
    section 3.1, eq. (1).
    """

    def __init__(self, encoder: nn.Module, pooling: str | None = None) -> None:
        super().__init__(encoder, pooling)
        if not callable(getattr(encoder, "forward_directions", None)) or not getattr(
            encoder, "bidirectional", False
        ):
            raise TypeError(
                f"BidirectionalLM needs a bidirectional RecurrentEncoder, got "
                f"{type(encoder).__name__}"
            )
        enc = cast(_BiEncoder, encoder)
        self.softmax = nn.Linear(enc.hidden_size, enc.vocab_size)

    def num_loss_tokens(self, batch: TextBatch) -> int:
        """Forward-direction targets in ``batch`` (= backward ones)."""
        input_ids, mask, _ = self.batch_tensors(batch)
        return int((bilm_targets(input_ids, mask)[0] != IGNORE_INDEX).sum())

    def loss_sum(self, batch: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed forward + backward NLL and the number of forward targets.

        Returns:
            Scalar float32 sum, scalar int64 count.
        """
        input_ids, mask, _ = self.batch_tensors(batch)
        fwd, bwd = cast(_BiEncoder, self.encoder).forward_directions(input_ids, mask)
        assert bwd is not None
        next_ids, prev_ids = bilm_targets(input_ids, mask)
        total = fwd.new_zeros((), dtype=torch.float32)
        for states, targets in ((fwd, next_ids), (bwd, prev_ids)):
            chosen = targets != IGNORE_INDEX
            logits = self.softmax(states[chosen])
            with float32_region(logits):
                total = total + F.cross_entropy(upcast(logits), targets[chosen], reduction="sum")
        return total, (next_ids != IGNORE_INDEX).sum()
