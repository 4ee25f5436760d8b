"""Recurrent text encoder: token embeddings followed by a (bi)directional LSTM or GRU."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ssl_models.text.padding import check_token_batch, packing_order
from ssl_models.text.pooling import check_pooling, pool_tokens

Cell = Literal["lstm", "gru"]


class RecurrentEncoder(nn.Module):
    """Embedding -> forward RNN stack (and a separate backward RNN stack) over the real tokens.

    The two directions are two independent stacks, as in ELMo: with ``torch.nn.LSTM``'s own
    ``bidirectional=True`` and two or more layers, layer 2 of the forward direction would read
    layer 1's backward states, i.e. the future, which a bidirectional language model must not.
    Padding never enters a recurrence: each row is packed to its real length (any padding side),
    and the backward stack reads the real tokens last to first.

    Args:
        vocab_size: Vocabulary size.
        embedding_dim: Token embedding width.
        hidden_size: Hidden width of each direction.
        num_layers: Layers of each stack.
        cell: ``"lstm"`` or ``"gru"``.
        bidirectional: Add the backward stack (output width ``2 * hidden_size``, forward states
            first).
        dropout: Dropout on the embeddings and between layers.
        pad_token_id: Padding id (its embedding row starts at zero and gets no gradient).
        pooling: ``"mean"``, ``"max"``, ``"cls"`` (first real token) or ``"last"``.

    Shape:
        ``input_ids (B, L) int64``, ``attention_mask (B, L)`` -> ``(B, output_dim) float32``.

    Raises:
        ValueError: A size below 1, an unknown cell or pooling; a malformed batch (forward).

    Reference: Peters et al., "Deep contextualized word representations" (ELMo),
    arXiv:1802.05365, section 3.1.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 128,
        hidden_size: int = 256,
        num_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = True,
        dropout: float = 0.0,
        pad_token_id: int = 0,
        pooling: str = "mean",
    ) -> None:
        super().__init__()
        if min(vocab_size, embedding_dim, hidden_size, num_layers) < 1:
            raise ValueError(
                f"sizes must be >= 1, got vocab_size={vocab_size}, embedding_dim={embedding_dim}, "
                f"hidden_size={hidden_size}, num_layers={num_layers}"
            )
        if cell not in get_args(Cell):
            raise ValueError(f"cell must be one of {get_args(Cell)}, got {cell!r}")
        self.pooling = check_pooling(pooling)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_token_id)
        self.dropout = nn.Dropout(dropout)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        between = dropout if num_layers > 1 else 0.0
        self.forward_rnn = rnn(
            embedding_dim, hidden_size, num_layers, batch_first=True, dropout=between
        )
        self.backward_rnn = (
            rnn(embedding_dim, hidden_size, num_layers, batch_first=True, dropout=between)
            if bidirectional
            else None
        )
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.output_dim = hidden_size * (2 if bidirectional else 1)

    @property
    def word_embeddings(self) -> nn.Embedding:
        """The ``(vocab_size, embedding_dim)`` token embedding table."""
        return self.embedding

    def _run(
        self, rnn: nn.Module, x: torch.Tensor, mask: torch.Tensor, reverse: bool
    ) -> torch.Tensor:
        order = packing_order(mask, reverse=reverse)
        aligned = x.gather(1, order.unsqueeze(-1).expand_as(x))
        lengths = mask.sum(dim=1).cpu()
        packed = pack_padded_sequence(aligned, lengths, batch_first=True, enforce_sorted=False)
        out, _ = rnn(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        back = order.argsort(dim=1)
        return states.gather(1, back.unsqueeze(-1).expand(-1, -1, states.shape[-1]))

    def forward_directions(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each direction's top-layer states at every original position.

        Args:
            input_ids: ``(B, L) int64``.
            attention_mask: ``(B, L)``, 1 = real token (None: all real).

        Returns:
            ``forward (B, L, hidden_size) float32``: at position t, having read real tokens
            ``<= t``; ``backward`` likewise having read real tokens ``>= t`` (None when not
            bidirectional). Zero at padding.
        """
        mask = check_token_batch(input_ids, attention_mask)
        x = self.dropout(self.embedding(input_ids))
        fwd = self._run(self.forward_rnn, x, mask, reverse=False)
        bwd = None if self.backward_rnn is None else self._run(self.backward_rnn, x, mask, True)
        return fwd, bwd

    def forward_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, L, output_dim) float32``: forward and backward states concatenated."""
        fwd, bwd = self.forward_directions(input_ids, attention_mask)
        return fwd if bwd is None else torch.cat([fwd, bwd], dim=-1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled sequence embeddings ``(B, output_dim) float32`` (see :attr:`pooling`)."""
        mask = check_token_batch(input_ids, attention_mask)
        return pool_tokens(self.forward_features(input_ids, mask), mask, self.pooling)
