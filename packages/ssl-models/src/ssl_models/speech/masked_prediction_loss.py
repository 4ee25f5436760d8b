"""HuBERT's masked prediction loss: cross-entropy of cluster targets from cosine logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl_models.losses._precision import float32_region, upcast


def cluster_logits(
    projected: torch.Tensor, label_embeddings: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """``cos(A o_t, e_c) / tau``: HuBERT's distribution over C clusters for every frame.

    Args:
        projected: ``(..., D)`` float, the transformer outputs after the projection A.
        label_embeddings: ``(C, D)`` float, one learned embedding e_c per cluster.
        temperature: tau > 0 (HuBERT: 0.1).

    Returns:
        ``(..., C)`` float32 logits (float64 stays float64), computed with autocast disabled.

    Raises:
        ValueError: Widths differ or the temperature is not positive.

    Reference: Hsu et al., arXiv:2106.07447, eq. (3).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if label_embeddings.ndim != 2 or projected.shape[-1] != label_embeddings.shape[1]:
        raise ValueError(
            f"projected must be (..., D) and label_embeddings (C, D), got "
            f"{tuple(projected.shape)} and {tuple(label_embeddings.shape)}"
        )
    with float32_region(projected):
        p = F.normalize(upcast(projected), dim=-1)
        e = F.normalize(upcast(label_embeddings), dim=-1)
        return p @ e.T / temperature


def masked_prediction_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask_time_indices: torch.Tensor,
    masked_weight: float = 1.0,
    ignore_index: int = -100,
) -> torch.Tensor:
    """``alpha * L_m + (1 - alpha) * L_u``: mean cross-entropy over the masked frames, and over
    the unmasked frames, of frames that have a target (padding carries ``ignore_index``).

    Args:
        logits: ``(B, F, C)`` float cluster logits (:func:`cluster_logits`).
        targets: ``(B, F)`` int64 cluster ids, ``ignore_index`` on padding or unlabelled frames.
        mask_time_indices: ``(B, F) bool``, True = masked.
        masked_weight: alpha in [0, 1] (HuBERT: 1, masked frames only).
        ignore_index: Target value to skip.

    Returns:
        Scalar float32. A term whose frame set is empty counts 0.

    Raises:
        ValueError: Shapes disagree, alpha outside [0, 1], a target outside ``[0, C)`` that is
            not ``ignore_index``, or no frame of the weighted terms has a target.

    Reference: Hsu et al., arXiv:2106.07447, eq. (2)-(4).
    """
    if not 0.0 <= masked_weight <= 1.0:
        raise ValueError(f"masked_weight must be in [0, 1], got {masked_weight}")
    if (
        logits.ndim != 3
        or targets.shape != logits.shape[:2]
        or (mask_time_indices.shape != targets.shape)
    ):
        raise ValueError(
            f"logits must be (B, F, C), targets and mask_time_indices (B, F), got "
            f"{tuple(logits.shape)}, {tuple(targets.shape)}, {tuple(mask_time_indices.shape)}"
        )
    labelled = targets != ignore_index
    c = logits.shape[-1]
    bad = labelled & ((targets < 0) | (targets >= c))
    if bad.any():
        raise ValueError(
            f"target {int(targets[bad][0])} is outside [0, {c}) and is not {ignore_index}"
        )
    mask = mask_time_indices.to(torch.bool)
    terms = [(masked_weight, labelled & mask), (1.0 - masked_weight, labelled & ~mask)]
    if not any(w > 0 and frames.any() for w, frames in terms):
        raise ValueError("no frame with a target in the weighted (masked/unmasked) terms")
    with float32_region(logits):
        lg = upcast(logits)
        loss = lg.new_zeros(())
        for weight, frames in terms:
            if weight > 0 and frames.any():
                loss = loss + weight * F.cross_entropy(lg[frames], targets[frames])
        return loss


__all__ = ["cluster_logits", "masked_prediction_loss"]
