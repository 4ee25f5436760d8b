"""BERT-style bidirectional text encoders (transformers' ``BertModel`` built from a config)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ssl_models.text.padding import check_token_batch, position_ids_from_mask
from ssl_models.text.pooling import check_pooling, pool_tokens
from ssl_models.text.sizes import check_transformer_sizes

# name -> (layers, hidden size, attention heads): the compact BERTs of Turc et al.,
# arXiv:1908.08962 (tiny, mini, small) and BERT-Base (Devlin et al., arXiv:1810.04805).
BERT_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (2, 128, 2),
    "mini": (4, 256, 4),
    "small": (4, 512, 8),
    "base": (12, 768, 12),
}


class BertEncoder(nn.Module):
    """A post-norm transformer encoder over token ids, pooled to one vector per sequence.

    The network is transformers' ``BertModel`` built from a ``BertConfig`` (random weights,
    nothing downloaded, no pooler layer). Position ids count real tokens only, so a sentence gets
    the same states under left or right padding and any amount of it.

    Args:
        vocab_size: Tokenizer vocabulary size (ids in ``[0, vocab_size)``).
        hidden_size: Token width D.
        num_layers: Transformer blocks.
        num_heads: Attention heads (must divide ``hidden_size``).
        intermediate_size: Feed-forward width (default ``4 * hidden_size``).
        max_position_embeddings: Longest sequence in tokens.
        pad_token_id: Id of the padding token (its embedding row starts at zero).
        pooling: ``"cls"``, ``"mean"`` or ``"max"`` (see :func:`~ssl_models.text.pool_tokens`).
        dropout: Dropout on embeddings, attention probabilities and block outputs (0.1 in BERT;
            SimCSE's two views come from it).

    Shape:
        ``input_ids (B, L) int64``, ``attention_mask (B, L)`` (1 = real token) ->
        ``(B, hidden_size) float32``. ``output_dim == hidden_size``.

    Raises:
        ValueError: A size below 1, heads not dividing the width, or an unknown pooling (at
            construction); a malformed batch or L above ``max_position_embeddings`` (at forward).

    Reference: Devlin et al., "BERT", arXiv:1810.04805; Turc et al., "Well-Read Students Learn
    Better", arXiv:1908.08962 (the compact sizes).
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 2,
        intermediate_size: int | None = None,
        max_position_embeddings: int = 512,
        pad_token_id: int = 0,
        pooling: str = "mean",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        check_transformer_sizes(
            vocab_size, hidden_size, num_layers, num_heads, max_position_embeddings
        )
        if not 0 <= pad_token_id < vocab_size:
            raise ValueError(f"pad_token_id {pad_token_id} must lie in [0, {vocab_size})")
        self.pooling = check_pooling(pooling)
        # Imported here so that `import ssl_models` stays fast for users of the losses alone.
        from transformers import BertConfig, BertModel

        self.config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=intermediate_size or 4 * hidden_size,
            max_position_embeddings=max_position_embeddings,
            pad_token_id=pad_token_id,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
        )
        self.bert = BertModel(self.config, add_pooling_layer=False)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.output_dim = hidden_size

    @property
    def word_embeddings(self) -> nn.Embedding:
        """The ``(vocab_size, hidden_size)`` token embedding table (tied to LM heads)."""
        emb: nn.Embedding = self.bert.embeddings.word_embeddings
        return emb

    def embed_tokens(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The embedding layer alone (token + position + segment, layer norm, dropout).

        Returns:
            ``(B, L, hidden_size) float32``; ELECTRA's generator reads the shared embeddings here.
        """
        mask = self._check(input_ids, attention_mask)
        out: torch.Tensor = self.bert.embeddings(
            input_ids=input_ids, position_ids=position_ids_from_mask(mask)
        )
        return out

    def _check(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        mask = check_token_batch(input_ids, attention_mask)
        if input_ids.shape[1] > self.max_position_embeddings:
            raise ValueError(
                f"sequence of {input_ids.shape[1]} tokens exceeds max_position_embeddings="
                f"{self.max_position_embeddings}"
            )
        return mask

    def forward_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Every token's final state.

        Args:
            input_ids: ``(B, L) int64``.
            attention_mask: ``(B, L)``, 1 = real token (None: all real).

        Returns:
            ``(B, L, hidden_size) float32`` (padding positions hold states that mean nothing).
        """
        mask = self._check(input_ids, attention_mask)
        out = self.bert(
            input_ids=input_ids,
            attention_mask=mask.long(),
            position_ids=position_ids_from_mask(mask),
        )
        hidden: torch.Tensor = out.last_hidden_state
        return hidden

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled sentence embeddings ``(B, hidden_size) float32`` (see :attr:`pooling`)."""
        mask = check_token_batch(input_ids, attention_mask)
        return pool_tokens(self.forward_features(input_ids, mask), mask, self.pooling)


def _sized(size: str, vocab_size: int, kwargs: dict[str, Any]) -> BertEncoder:
    layers, hidden, heads = BERT_SIZES[size]
    for key in ("hidden_size", "num_layers", "num_heads"):
        if key in kwargs:
            raise TypeError(f"bert_{size} fixes {key}; use the 'bert' encoder to choose it")
    return BertEncoder(vocab_size, hidden_size=hidden, num_layers=layers, num_heads=heads, **kwargs)


def bert_tiny(vocab_size: int, **kwargs: Any) -> BertEncoder:
    """BERT-Tiny: 2 layers, D=128, 2 heads (arXiv:1908.08962). Other keyword arguments as
    :class:`BertEncoder` except the three sizes."""
    return _sized("tiny", vocab_size, kwargs)


def bert_mini(vocab_size: int, **kwargs: Any) -> BertEncoder:
    """BERT-Mini: 4 layers, D=256, 4 heads (arXiv:1908.08962)."""
    return _sized("mini", vocab_size, kwargs)


def bert_small(vocab_size: int, **kwargs: Any) -> BertEncoder:
    """BERT-Small: 4 layers, D=512, 8 heads (arXiv:1908.08962)."""
    return _sized("small", vocab_size, kwargs)


def bert_base(vocab_size: int, **kwargs: Any) -> BertEncoder:
    """BERT-Base: 12 layers, D=768, 12 heads (arXiv:1810.04805)."""
    return _sized("base", vocab_size, kwargs)
