"""A static word-embedding encoder: one vector per token id, pooled over the real tokens."""

from __future__ import annotations

import torch
from torch import nn

from ssl_models.text.padding import check_token_batch
from ssl_models.text.pooling import check_pooling, pool_tokens


class WordEmbeddingEncoder(nn.Module):
    """Token id -> vector (no context); sentences are pooled bags of word vectors.

    The "input" vectors of skip-gram (word2vec). Initialised uniform in ``[-0.5 / D, 0.5 / D]``
    as in the word2vec C tool.

    Args:
        vocab_size: Vocabulary size V.
        embedding_dim: Vector width D.
        pooling: ``"mean"`` (default) or ``"max"`` over the real tokens of a sentence.

    Shape:
        ``input_ids (B, L) int64``, ``attention_mask (B, L)`` -> ``(B, D) float32``.

    Raises:
        ValueError: A size below 1 or an unknown pooling; a malformed batch (forward).

    Reference: Mikolov et al., "Distributed Representations of Words and Phrases and their
    Compositionality", arXiv:1310.4546.
    """

    def __init__(self, vocab_size: int, embedding_dim: int = 100, pooling: str = "mean") -> None:
        super().__init__()
        if min(vocab_size, embedding_dim) < 1:
            raise ValueError(
                f"sizes must be >= 1, got vocab_size={vocab_size}, embedding_dim={embedding_dim}"
            )
        self.pooling = check_pooling(pooling)
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        nn.init.uniform_(self.embedding.weight, -0.5 / embedding_dim, 0.5 / embedding_dim)
        self.vocab_size = vocab_size
        self.output_dim = embedding_dim

    @property
    def word_embeddings(self) -> nn.Embedding:
        """The ``(V, D)`` word vectors."""
        return self.embedding

    def forward_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, L, D) float32`` word vectors of every token."""
        check_token_batch(input_ids, attention_mask)
        vectors: torch.Tensor = self.embedding(input_ids)
        return vectors

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled bag of word vectors ``(B, D) float32``."""
        mask = check_token_batch(input_ids, attention_mask)
        return pool_tokens(self.forward_features(input_ids, mask), mask, self.pooling)
