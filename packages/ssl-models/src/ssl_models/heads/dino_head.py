"""DINO's projection head: an MLP to an L2-normalised bottleneck, then a weight-normalised layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class DINOHead(nn.Module):
    """``num_layers`` linear layers (GELU between them) ending in a ``bottleneck_dim`` output that
    is L2-normalised, then a weight-normalised linear layer (no bias) to ``output_dim`` logits.

    The last layer is ``W = g * V / ||V||`` per output row (``torch``'s ``weight_norm``
    parametrisation: ``original0`` is g, ``original1`` is V). With ``norm_last_layer=True`` (the
    paper's default) g is fixed to 1 and gets no gradient, so every logit is a cosine similarity
    between the bottleneck feature and a prototype; this stabilises training.

    Args:
        input_dim: Encoder output width.
        output_dim: Number of prototypes K (65536 in the paper; a few hundred suffice for small
            datasets).
        hidden_dim: Hidden width of the MLP (2048 in the paper).
        bottleneck_dim: Width of the L2-normalised bottleneck (256 in the paper).
        num_layers: Linear layers of the MLP before the last layer (>= 1; 3 in the paper).
        use_bn: Batch norm after each hidden linear layer (the paper uses it for ResNets only).
        norm_last_layer: Fix the weight-norm gain g of the last layer to 1.

    Shape:
        ``(B, input_dim) float32`` -> ``(B, output_dim) float32`` logits.

    Raises:
        ValueError: A width or ``num_layers`` is below 1.

    Reference: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
    arXiv:2104.14294, section 3.1 and Appendix (projection head).
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        use_bn: bool = False,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        if min(input_dim, output_dim, hidden_dim, bottleneck_dim, num_layers) < 1:
            raise ValueError(
                f"widths and num_layers must be >= 1, got input_dim={input_dim}, "
                f"output_dim={output_dim}, hidden_dim={hidden_dim}, "
                f"bottleneck_dim={bottleneck_dim}, num_layers={num_layers}"
            )
        layers: list[nn.Module] = []
        dim = input_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim))
            if use_bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, output_dim, bias=False))
        gain = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            gain.fill_(1.0)
        if norm_last_layer:
            gain.requires_grad_(False)
        self.output_dim = output_dim
        self.bottleneck_dim = bottleneck_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1, eps=1e-12)
        out: torch.Tensor = self.last_layer(x)
        return out
