"""A collapse monitor: the spread of L2-normalised embeddings across a batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def collapse_std(embeddings: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of the per-dimension standard deviation of L2-normalised embeddings.

    SimSiam (section 4.1, Figure 2) plots this to detect collapse: for embeddings spread like
    isotropic Gaussians on the unit sphere each dimension has std ``1/sqrt(D)``, so a healthy
    value is close to ``1/sqrt(D)``; when all embeddings collapse to one vector it goes to 0.
    Log it on the projector's output (or the encoder's) during training; no gradient is recorded.

    Args:
        embeddings: ``(B, D)`` float (any float dtype), B >= 2.

    Returns:
        Scalar float32 tensor >= 0 (unbiased std over the batch).

    Raises:
        ValueError: ``embeddings`` is not 2-D or has fewer than 2 rows.

    Reference: Chen and He, "Exploring Simple Siamese Representation Learning",
    arXiv:2011.10566, section 4.1.
    """
    if embeddings.ndim != 2 or embeddings.shape[0] < 2:
        raise ValueError(f"embeddings must be (B, D) with B >= 2, got {tuple(embeddings.shape)}")
    z = F.normalize(embeddings.detach().float(), dim=1)
    return z.std(dim=0).mean()
