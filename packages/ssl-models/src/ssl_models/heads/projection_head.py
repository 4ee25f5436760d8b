"""Projection head: the MLP between the encoder and a self-supervised objective."""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """MLP ``Linear -> BatchNorm -> ReLU`` repeated, then a final ``Linear`` (optionally followed
    by a ``BatchNorm1d(affine=False)``).

    The loss is computed on its output, while downstream tasks use the encoder's output before it.
    The papers' heads (``input_dim`` is the encoder width, 2048 for a ResNet-50):

    ==================  ==========  ===========  ==========  ===============================
    method              num_layers  hidden_dim   output_dim  other
    ==================  ==========  ===========  ==========  ===============================
    SimCLR              2           2048         128
    MoCo v2             2           2048         128         ``batch_norm=False``
    BYOL                2           4096         256
    SimSiam             3           2048         2048        ``batch_norm_last=True``
    MoCo v3             3           4096         256         ``batch_norm_last=True``
    Barlow Twins        3           8192         8192        ``bias_last=False``
    VICReg              3           8192         8192        ``bias_last=False``
    ==================  ==========  ===========  ==========  ===============================

    Args:
        input_dim: Encoder output width.
        hidden_dim: Hidden layer width.
        output_dim: Projection width.
        num_layers: Number of linear layers (>= 1).
        batch_norm: Batch norm after each hidden linear layer (whose bias is then dropped, being
            redundant); without it the hidden layers are ``Linear(bias=True) -> ReLU``.
        batch_norm_last: A ``BatchNorm1d(affine=False)`` after the last linear layer (whose bias is
            then dropped), as SimSiam and MoCo v3 do.
        bias_last: Bias in the last linear layer (when not followed by batch norm).

    Shape:
        ``(B, input_dim) float32`` -> ``(B, output_dim) float32``.

    Raises:
        ValueError: A width or ``num_layers`` is below 1.

    Reference: Chen et al., arXiv:2002.05709, section 2.1 (SimCLR); Chen et al., arXiv:2003.04297
    (MoCo v2); Grill et al., arXiv:2006.07733, section 3.3 (BYOL); Chen and He, arXiv:2011.10566,
    section 3 (SimSiam); Chen et al., arXiv:2104.02057, section 4 (MoCo v3); Zbontar et al.,
    arXiv:2103.03230, section 3 (Barlow Twins); Bardes et al., arXiv:2105.04906, section 4.2
    (VICReg).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int = 512,
        output_dim: int = 128,
        num_layers: int = 2,
        batch_norm: bool = True,
        batch_norm_last: bool = False,
        bias_last: bool = True,
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
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, output_dim, bias=bias_last and not batch_norm_last))
        if batch_norm_last:
            layers.append(nn.BatchNorm1d(output_dim, affine=False))
        self.layers = nn.Sequential(*layers)
        self.output_dim = output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
