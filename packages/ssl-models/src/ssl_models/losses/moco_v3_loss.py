"""The symmetrised contrastive loss of MoCo v3 (in-batch negatives, keys from the momentum
encoder)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_models import distributed
from ssl_models.losses._precision import float32_region, upcast


class MoCoV3Loss(nn.Module):
    """``ctr(q_a, k_b) + ctr(q_b, k_a)``, where ``ctr(q, k)`` is InfoNCE of each query against all
    keys of the batch (its own image's key is the positive), scaled by ``2 * temperature``.

    ``ctr(q, k) = 2 t * mean_i -log(exp(q_i . k_i / t) / sum_j exp(q_i . k_j / t))`` on
    L2-normalised rows. The ``2 t`` factor (the paper's Algorithm 1) makes the gradient magnitude
    less dependent on t. Keys are detached (they come from the momentum encoder). Computed in
    float32 (float64 stays float64), autocast disabled.

    With ``gather_distributed=True`` the keys of all ranks are the candidates (in rank order), so
    the positive of local query ``i`` is gathered key ``i + rank * B``; each rank averages over its
    own B queries, so the mean over ranks is the single-process loss on the global batch and DDP's
    gradient average equals the single-process gradient (see :mod:`ssl_models.distributed`).

    Args:
        temperature: t (> 0); 0.2 in the paper's ViT setting (1.0 for ResNet).
        gather_distributed: Use the keys of all ranks when ``torch.distributed`` is initialised.

    Shape:
        ``q_a``, ``q_b``, ``k_a``, ``k_b``: ``(B, D)`` float (any float dtype), the same B on every
        rank; ``q_*`` from the online predictor, ``k_*`` from the momentum projection head.
        Output: scalar float32.

    Raises:
        ValueError: Temperature not positive, or the four shapes are not one ``(B, D)``.

    Reference: Chen, Xie and He, "An Empirical Study of Training Self-Supervised Vision
    Transformers", arXiv:2104.02057, Algorithm 1.
    """

    def __init__(self, temperature: float = 0.2, gather_distributed: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(
        self, q_a: torch.Tensor, q_b: torch.Tensor, k_a: torch.Tensor, k_b: torch.Tensor
    ) -> torch.Tensor:
        shapes = {tuple(t.shape) for t in (q_a, q_b, k_a, k_b)}
        if len(shapes) != 1 or q_a.ndim != 2:
            raise ValueError(
                f"q_a, q_b, k_a, k_b must all be one (B, D) shape, got {sorted(shapes)}"
            )
        return self._contrastive(q_a, k_b) + self._contrastive(q_b, k_a)

    def _contrastive(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        with float32_region(q):
            q = F.normalize(upcast(q), dim=1)
            k = F.normalize(upcast(k.detach()), dim=1)
            offset = 0
            if self.gather_distributed and distributed.world_size() > 1:
                k = distributed.gather(k)
                offset = distributed.rank() * q.shape[0]
            logits = q @ k.T / self.temperature
            labels = torch.arange(q.shape[0], device=q.device) + offset
            return F.cross_entropy(logits, labels) * (2 * self.temperature)
