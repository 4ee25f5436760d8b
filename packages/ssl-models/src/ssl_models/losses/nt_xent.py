"""NT-Xent, the normalised temperature-scaled cross-entropy loss of SimCLR."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_models import distributed
from ssl_models.losses._precision import float32_region, upcast


class NTXentLoss(nn.Module):
    """NT-Xent (InfoNCE over 2N views): each view's positive is the other view of its image,
    its negatives the 2(N - 1) views of the other images.

    With ``z = normalize([z_a; z_b])`` and ``s_ij = z_i . z_j / temperature``, the loss is the mean
    over the 2N anchors of ``-log(exp(s_ip) / sum_{k != i} exp(s_ik))``. The self-similarity
    ``s_ii`` is excluded from the denominator (masked before the softmax, so it gets no gradient).
    Computed in float32 (float64 stays float64), autocast disabled.

    With ``gather_distributed=True`` the N images are the global batch: every rank's 2B local
    views are anchors against the 2N views gathered from all ranks (N = world size x B); the
    positive of local row ``i`` sits at global row ``i + rank * B``. Each rank returns the mean over
    its own 2B anchors, so the mean over ranks is the single-process loss on the global batch and,
    with DDP's gradient averaging, the parameter gradients equal single-process ones (see
    :mod:`ssl_models.distributed`).

    Args:
        temperature: Softmax temperature (> 0); SimCLR uses 0.1-0.5, 0.5 for CIFAR-10.
        gather_distributed: Take negatives from all ranks when ``torch.distributed`` is
            initialised (no effect otherwise).

    Shape:
        ``z_a``, ``z_b``: ``(B, D)`` float (any float dtype; computed in float32), B >= 2, the same
        B on every rank. Output: scalar float32.

    Raises:
        ValueError: Temperature not positive, shapes differ, or B < 2.

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of Visual
    Representations", arXiv:2002.05709, eq. (1).
    """

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        if z_a.shape != z_b.shape or z_a.ndim != 2 or z_a.shape[0] < 2:
            raise ValueError(
                f"z_a and z_b must both be (B, D) with B >= 2, got {tuple(z_a.shape)} and "
                f"{tuple(z_b.shape)}"
            )
        with float32_region(z_a):
            b = z_a.shape[0]
            a = F.normalize(upcast(z_a), dim=1)
            p = F.normalize(upcast(z_b), dim=1)
            offset = 0
            all_a, all_p = a, p
            if self.gather_distributed and distributed.world_size() > 1:
                all_a, all_p = distributed.gather(a), distributed.gather(p)
                offset = distributed.rank() * b
            n = all_a.shape[0]
            logits = torch.cat([a, p]) @ torch.cat([all_a, all_p]).T / self.temperature
            rows = torch.arange(b, device=a.device) + offset
            self_cols = torch.cat([rows, rows + n])
            positive_cols = torch.cat([rows + n, rows])
            self_mask = torch.zeros_like(logits, dtype=torch.bool)
            self_mask[torch.arange(2 * b, device=a.device), self_cols] = True
            logits = logits.masked_fill(self_mask, float("-inf"))
            return F.cross_entropy(logits, positive_cols)
