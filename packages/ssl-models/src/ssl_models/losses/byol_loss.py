"""BYOL's normalised mean squared error between online predictions and target projections."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_models.losses._precision import float32_region, upcast


class BYOLLoss(nn.Module):
    """Symmetrised BYOL loss ``L(p_a, z_b) + L(p_b, z_a)`` with
    ``L(p, z) = mean_i ||p_i/||p_i|| - z_i/||z_i|| ||^2 = mean_i (2 - 2 cos(p_i, z_i))``.

    ``p`` are the online network's predictions, ``z`` the target network's projections of the
    *other* view; the targets are detached (stop-gradient). Computed in float32 (float64 stays float64), autocast
    disabled. Range ``[0, 8]``; 0 when every prediction points along its target.

    Shape:
        ``p_a``, ``p_b``, ``z_a``, ``z_b``: ``(B, D)`` float (any float dtype). Output: scalar
        float32.

    Raises:
        ValueError: The four shapes are not one ``(B, D)``.

    Reference: Grill et al., "Bootstrap Your Own Latent", arXiv:2006.07733, eq. (2) and the
    symmetrised loss after it.
    """

    def forward(
        self, p_a: torch.Tensor, p_b: torch.Tensor, z_a: torch.Tensor, z_b: torch.Tensor
    ) -> torch.Tensor:
        shapes = {tuple(t.shape) for t in (p_a, p_b, z_a, z_b)}
        if len(shapes) != 1 or p_a.ndim != 2:
            raise ValueError(
                f"p_a, p_b, z_a, z_b must all be one (B, D) shape, got {sorted(shapes)}"
            )
        with float32_region(p_a):
            return self._loss(p_a, z_b) + self._loss(p_b, z_a)

    @staticmethod
    def _loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        cos = F.cosine_similarity(upcast(p), upcast(z.detach()), dim=1)
        return (2 - 2 * cos).mean()
