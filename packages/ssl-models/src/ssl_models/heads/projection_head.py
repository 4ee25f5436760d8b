"""Projection head: the MLP between the encoder and a contrastive loss."""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """MLP ``Linear -> BatchNorm -> ReLU`` repeated, then a final ``Linear``.

    SimCLR's head has one hidden layer (``num_layers=2``); the loss is computed on its output,
    while downstream tasks use the encoder's output before it.

    Args:
        input_dim: Encoder output width.
        hidden_dim: Hidden layer width.
        output_dim: Projection width (128 in SimCLR).
        num_layers: Number of linear layers (>= 1).

    Shape:
        ``(B, input_dim) float32`` -> ``(B, output_dim) float32``.

    Raises:
        ValueError: A width or ``num_layers`` is below 1.

    Reference: Chen et al., arXiv:2002.05709, section 2.1.
    """

    def __init__(
        self, input_dim: int, hidden_dim: int = 512, output_dim: int = 128, num_layers: int = 2
    ) -> None:
        super().__init__()
        if min(input_dim, hidden_dim, output_dim, num_layers) < 1:
            raise ValueError(
                f"widths and num_layers must be >= 1, got {input_dim}, {hidden_dim}, "
                f"{output_dim}, {num_layers}"
            )
        layers: list[nn.Module] = []
        dim = input_dim
        for _ in range(num_layers - 1):
            layers += [
                nn.Linear(dim, hidden_dim, bias=False),
                nn.BatchNorm1d(hidden_dim),
                nn.ReLU(inplace=True),
            ]
            dim = hidden_dim
        layers.append(nn.Linear(dim, output_dim))
        self.layers = nn.Sequential(*layers)
        self.output_dim = output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
