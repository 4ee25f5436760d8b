"""NT-Xent, the normalised temperature-scaled cross-entropy loss of SimCLR."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NTXentLoss(nn.Module):
    """NT-Xent (InfoNCE over 2B views): each view's positive is the other view of its image,
    its negatives the 2(B - 1) views of the other images.

    With ``z = normalize([z_a; z_b])`` and ``s_ij = z_i . z_j / temperature``, the loss is the mean
    over the 2B anchors of ``-log(exp(s_ip) / sum_{k != i} exp(s_ik))``. The self-similarity
    ``s_ii`` is excluded from the denominator (masked before the softmax, so it gets no gradient).

    Args:
        temperature: Softmax temperature (> 0); SimCLR uses 0.1-0.5, 0.5 for CIFAR-10.

    Shape:
        ``z_a``, ``z_b``: ``(B, D)`` float (any float dtype; computed in float32), B >= 2.
        Output: scalar float32.

    Raises:
        ValueError: Temperature not positive, shapes differ, or B < 2.

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of Visual
    Representations", arXiv:2002.05709, eq. (1).
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        if z_a.shape != z_b.shape or z_a.ndim != 2 or z_a.shape[0] < 2:
            raise ValueError(
                f"z_a and z_b must both be (B, D) with B >= 2, got {tuple(z_a.shape)} and "
                f"{tuple(z_b.shape)}"
            )
        b = z_a.shape[0]
        z = F.normalize(torch.cat([z_a, z_b]).float(), dim=1)
        logits = z @ z.T / self.temperature
        self_mask = torch.eye(2 * b, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        targets = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
        return F.cross_entropy(logits, targets)
