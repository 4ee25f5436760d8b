"""SimCSE's in-batch InfoNCE over cosine similarities."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_models import distributed
from ssl_models.losses._precision import float32_region, upcast


class SimCSELoss(nn.Module):
    """``mean_i -log(exp(cos(h_i, h+_i) / t) / sum_j exp(cos(h_i, h+_j) / t))``.

    Each sentence's first view is an anchor; the candidates are the second views of every
    sentence in the batch (its own is the positive). Unlike NT-Xent, the first views are not
    candidates and the loss is not symmetrised (the paper's eq. 4). Gradients flow into both
    views. Computed in float32, autocast disabled.

    With ``gather_distributed=True`` the candidates are the second views of all ranks (in rank
    order); each rank averages over its own anchors, so with DDP's gradient averaging the update
    equals one process on the global batch.

    Args:
        temperature: t (> 0); 0.05 in the paper.
        gather_distributed: Candidates from all ranks when ``torch.distributed`` is initialised.

    Shape:
        ``h``, ``h_positive``: ``(B, D)`` float, B >= 2. Output: scalar float32.

    Raises:
        ValueError: Temperature not positive, shapes differ, or B < 2.

    Reference: Gao, Yao and Chen, "SimCSE: Simple Contrastive Learning of Sentence Embeddings",
    arXiv:2104.08821, eq. (4).
    """

    def __init__(self, temperature: float = 0.05, gather_distributed: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(self, h: torch.Tensor, h_positive: torch.Tensor) -> torch.Tensor:
        if h.shape != h_positive.shape or h.ndim != 2 or h.shape[0] < 2:
            raise ValueError(
                f"h and h_positive must both be (B, D) with B >= 2, got {tuple(h.shape)} and "
                f"{tuple(h_positive.shape)}"
            )
        with float32_region(h):
            a = F.normalize(upcast(h), dim=1)
            p = F.normalize(upcast(h_positive), dim=1)
            offset = 0
            if self.gather_distributed and distributed.world_size() > 1:
                p = distributed.gather(p)
                offset = distributed.rank() * a.shape[0]
            logits = a @ p.T / self.temperature
            labels = torch.arange(a.shape[0], device=a.device) + offset
            return F.cross_entropy(logits, labels)
