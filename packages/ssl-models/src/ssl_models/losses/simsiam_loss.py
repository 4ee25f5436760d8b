"""SimSiam's symmetrised negative cosine similarity with stop-gradient on the targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_models.losses._precision import float32_region, upcast


class SimSiamLoss(nn.Module):
    """``L = D(p_a, stopgrad(z_b)) / 2 + D(p_b, stopgrad(z_a)) / 2`` with
    ``D(p, z) = -mean_i cos(p_i, z_i)``.

    ``p`` are the predictor's outputs, ``z`` the projector's outputs of the *other* view. The
    stop-gradient on ``z`` is what prevents collapse in SimSiam (the paper's section 4.1); it is
    applied here, so callers pass ``z`` with its graph. Computed in float32 (float64 stays float64), autocast
    disabled. Range ``[-1, 1]``; -1 when every prediction points along its target.

    Shape:
        ``p_a``, ``p_b``, ``z_a``, ``z_b``: ``(B, D)`` float (any float dtype). Output: scalar
        float32.

    Raises:
        ValueError: The four shapes are not one ``(B, D)``.

    Reference: Chen and He, "Exploring Simple Siamese Representation Learning",
    arXiv:2011.10566, eq. (1)-(4) and Algorithm 1.
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
            return 0.5 * self._d(p_a, z_b) + 0.5 * self._d(p_b, z_a)

    @staticmethod
    def _d(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return -F.cosine_similarity(upcast(p), upcast(z.detach()), dim=1).mean()
