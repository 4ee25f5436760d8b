"""GPT-2-style causal decoder (transformers' ``GPT2Model`` built from a config)."""

from __future__ import annotations

import torch
from torch import nn

from ssl_models.text.padding import check_token_batch, position_ids_from_mask
from ssl_models.text.pooling import check_pooling, pool_tokens
from ssl_models.text.sizes import check_transformer_sizes


class GPT2Decoder(nn.Module):
    """A pre-norm causal transformer: position t attends to real tokens at positions <= t.

    Built from a ``GPT2Config`` (random weights, nothing downloaded). Position ids count real
    tokens, so left padding (the decoder's usual side) leaves a sequence's states unchanged.

    Args:
        vocab_size: Tokenizer vocabulary size.
        hidden_size: Token width D (``n_embd``).
        num_layers: Blocks (``n_layer``).
        num_heads: Attention heads (must divide ``hidden_size``).
        max_position_embeddings: Longest sequence in tokens (``n_positions``).
        pooling: ``"last"`` (the last real token, default), ``"mean"`` or ``"max"``; ``"cls"``
            takes the first token, which has seen only itself.
        dropout: Residual, embedding and attention dropout (0.1 in GPT-2).

    Shape:
        ``input_ids (B, L) int64``, ``attention_mask (B, L)`` -> ``(B, hidden_size) float32``.
        ``output_dim == hidden_size``.

    Raises:
        ValueError: Bad sizes or pooling (construction); a malformed batch or L above
            ``max_position_embeddings`` (forward).

    Reference: Radford et al., "Language Models are Unsupervised Multitask Learners" (GPT-2,
    2019).
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 2,
        max_position_embeddings: int = 512,
        pooling: str = "last",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        check_transformer_sizes(
            vocab_size, hidden_size, num_layers, num_heads, max_position_embeddings
        )
        self.pooling = check_pooling(pooling)
        from transformers import GPT2Config, GPT2Model

        self.config = GPT2Config(
            vocab_size=vocab_size,
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=num_heads,
            n_positions=max_position_embeddings,
            resid_pdrop=dropout,
            embd_pdrop=dropout,
            attn_pdrop=dropout,
            bos_token_id=vocab_size - 1,
            eos_token_id=vocab_size - 1,
        )
        self.gpt2 = GPT2Model(self.config)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.output_dim = hidden_size

    @property
    def word_embeddings(self) -> nn.Embedding:
        """The ``(vocab_size, hidden_size)`` token embedding table (``wte``, tied to the LM head)."""
        emb: nn.Embedding = self.gpt2.wte
        return emb

    def forward_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Every token's final state ``(B, L, hidden_size) float32``; position t has seen only
        the real tokens at positions <= t."""
        mask = check_token_batch(input_ids, attention_mask)
        if input_ids.shape[1] > self.max_position_embeddings:
            raise ValueError(
                f"sequence of {input_ids.shape[1]} tokens exceeds max_position_embeddings="
                f"{self.max_position_embeddings}"
            )
        out = self.gpt2(
            input_ids=input_ids,
            attention_mask=mask.long(),
            position_ids=position_ids_from_mask(mask),
            use_cache=False,
        )
        hidden: torch.Tensor = out.last_hidden_state
        return hidden

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled sequence embeddings ``(B, hidden_size) float32`` (see :attr:`pooling`)."""
        mask = check_token_batch(input_ids, attention_mask)
        return pool_tokens(self.forward_features(input_ids, mask), mask, self.pooling)
