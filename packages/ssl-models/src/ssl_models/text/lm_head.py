"""Language-model output heads whose decoder is the encoder's input embedding table."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TiedLMHead(nn.Module):
    """``dense -> GELU -> LayerNorm -> logits = h @ E^T + b`` (BERT's MLM head; ``transform=False``
    gives GPT-2's plain ``h @ E^T``).

    The decoder weight is the encoder's embedding table ``E``, referenced, not registered: it
    appears once in the method's state dict (under ``encoder.``), which safetensors requires
    (it refuses tensors that share memory), and gradients from both uses add up on ``E``.

    Args:
        input_dim: Width of the token states.
        embedding: The ``(V, E)`` token embedding table to tie the decoder to.
        transform: Add BERT's dense + GELU + LayerNorm transform (``input_dim -> E``).
        bias: A per-token output bias.
        layer_norm_eps: LayerNorm epsilon (1e-12 in BERT).

    Shape:
        ``(..., input_dim) float`` -> ``(..., V) float`` logits.

    Raises:
        ValueError: ``transform=False`` with ``input_dim`` != E.

    Reference: Devlin et al., "BERT", arXiv:1810.04805 (MLM head); Press and Wolf, "Using the
    Output Embedding to Improve Language Models", arXiv:1608.05859 (tying).
    """

    def __init__(
        self,
        input_dim: int,
        embedding: nn.Embedding,
        transform: bool = True,
        bias: bool = True,
        layer_norm_eps: float = 1e-12,
    ) -> None:
        super().__init__()
        vocab, width = embedding.weight.shape
        if not transform and input_dim != width:
            raise ValueError(
                f"without a transform the states' width {input_dim} must equal the embedding "
                f"width {width}"
            )
        self.transform = (
            nn.Sequential(
                nn.Linear(input_dim, width), nn.GELU(), nn.LayerNorm(width, eps=layer_norm_eps)
            )
            if transform
            else nn.Identity()
        )
        self.bias = nn.Parameter(torch.zeros(vocab)) if bias else None
        # Not a submodule: the table stays registered only where it lives (the encoder).
        object.__setattr__(self, "_embedding", embedding)

    @property
    def embedding(self) -> nn.Embedding:
        """The tied ``(V, E)`` embedding table."""
        emb: nn.Embedding = self.__dict__["_embedding"]
        return emb

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(hidden), self.embedding.weight, self.bias)
