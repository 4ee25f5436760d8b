"""Size checks shared by the transformer text encoders (BERT-style and GPT-2-style)."""

from __future__ import annotations


def check_transformer_sizes(
    vocab_size: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    max_position_embeddings: int,
) -> None:
    """Validate a transformer encoder's sizes before transformers builds it.

    Args:
        vocab_size: Tokens in the vocabulary.
        hidden_size: Width of every layer.
        num_layers: Transformer blocks.
        num_heads: Attention heads per block; must divide ``hidden_size``.
        max_position_embeddings: Longest sequence in tokens.

    Raises:
        ValueError: A size below 1, or heads not dividing the width (the message names them).
    """
    if min(vocab_size, hidden_size, num_layers, num_heads, max_position_embeddings) < 1:
        raise ValueError(
            f"sizes must be >= 1, got vocab_size={vocab_size}, hidden_size={hidden_size}, "
            f"num_layers={num_layers}, num_heads={num_heads}, "
            f"max_position_embeddings={max_position_embeddings}"
        )
    if hidden_size % num_heads:
        raise ValueError(f"num_heads={num_heads} must divide hidden_size={hidden_size}")
