"""Linear classifier: the linear probe trained on frozen features."""

from __future__ import annotations

import torch
from torch import nn


class LinearClassifier(nn.Module):
    """A single ``Linear`` layer from features to class logits, optionally after a parameter-free
    batch norm.

    The standard evaluation of self-supervised encoders trains this head on frozen encoder
    features. The weights start from ``N(0, 0.01^2)`` and the bias from 0, as in the MoCo/SimCLR
    protocols; MAE normalises the features first (``batch_norm=True``), which makes the probe
    less sensitive to the features' scale.

    Args:
        input_dim: Feature width (the encoder's ``output_dim``).
        num_classes: Number of classes (>= 2).
        batch_norm: A ``BatchNorm1d(affine=False)`` before the linear layer.

    Shape:
        ``(B, input_dim) float32`` -> ``(B, num_classes) float32`` logits.

    Raises:
        ValueError: ``input_dim`` below 1 or ``num_classes`` below 2; in ``forward``, an input that
            is not ``(B, input_dim)``.

    Reference: He et al., arXiv:1911.05722, section 4.1 (linear classification protocol);
    He et al., "Masked Autoencoders Are Scalable Vision Learners", arXiv:2111.06377, appendix A.2.
    """

    def __init__(self, input_dim: int, num_classes: int, batch_norm: bool = False) -> None:
        super().__init__()
        if input_dim < 1 or num_classes < 2:
            raise ValueError(
                f"need input_dim >= 1 and num_classes >= 2, got {input_dim} and {num_classes}"
            )
        self.norm: nn.Module = (
            nn.BatchNorm1d(input_dim, affine=False) if batch_norm else nn.Identity()
        )
        self.linear = nn.Linear(input_dim, num_classes)
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)
        self.input_dim = input_dim
        self.num_classes = num_classes

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 2 or features.shape[1] != self.input_dim:
            raise ValueError(
                f"expected (B, {self.input_dim}) features, got {tuple(features.shape)}"
            )
        return self.linear(self.norm(features))
