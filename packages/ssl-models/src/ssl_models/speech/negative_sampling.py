"""wav2vec 2.0 distractors: other masked frames of the same utterance."""

from __future__ import annotations

import torch


def sample_negative_indices(
    mask_time_indices: torch.Tensor,
    num_negatives: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """For every masked frame, ``num_negatives`` distractor frames drawn uniformly, with
    replacement, from the *other* masked frames of the same utterance.

    Distractors therefore never index a padded frame (padding is never masked), an unmasked
    frame, another utterance, or the anchor's own frame (its positive). As in wav2vec 2.0's
    reference code, the anchor's own rank is skipped by drawing from ``m - 1`` ranks and shifting
    draws at or above the anchor's rank by one, which keeps the draw uniform over the others.

    Randomness comes from torch's generator (``generator`` or the global one), like dropout and
    the Gumbel noise of the same step; pass a seeded generator for reproducible draws.

    Args:
        mask_time_indices: ``(B, F) bool``, True = masked frame (never on padding).
        num_negatives: K >= 1 distractors per masked frame (wav2vec 2.0: 100).
        generator: Optional torch generator on the mask's device.

    Returns:
        ``(B, F, K) int64`` frame indices into the same utterance's F frames. Rows of unmasked
        frames, and of every frame of an utterance with fewer than 2 masked frames (no possible
        distractor), are -1; :func:`has_negatives` gives those that are valid.

    Raises:
        ValueError: ``mask_time_indices`` is not 2-D, or ``num_negatives < 1``.

    Reference: Baevski et al., arXiv:2006.11477, section 3.2.
    """
    if mask_time_indices.ndim != 2:
        raise ValueError(f"mask_time_indices must be (B, F), got {tuple(mask_time_indices.shape)}")
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    mask = mask_time_indices.to(torch.bool)
    b, f = mask.shape
    device = mask.device
    num_masked = mask.sum(dim=1)  # (B,)
    # masked frame positions first, in time order (stable sort of "not masked")
    masked_positions = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # (B, F)
    rank = mask.long().cumsum(dim=1) - 1  # rank of each masked frame among its utterance's
    u = torch.rand(b, f, num_negatives, generator=generator, device=device)
    others = (num_masked - 1).clamp(min=1).to(u.dtype)[:, None, None]
    draw = (u * others).long().clamp(max=(others.long() - 1))  # uniform in [0, m - 2]
    draw = draw + (draw >= rank[..., None]).long()  # skip the anchor's own rank
    draw = draw.clamp(max=f - 1)
    negatives = torch.gather(masked_positions, 1, draw.view(b, -1)).view(b, f, num_negatives)
    valid = has_negatives(mask)
    return torch.where(valid[..., None], negatives, torch.full_like(negatives, -1))


def has_negatives(mask_time_indices: torch.Tensor) -> torch.Tensor:
    """Frames that get distractors: masked frames of utterances with at least 2 masked frames.

    Args:
        mask_time_indices: ``(B, F) bool``, True = masked.

    Returns:
        ``(B, F) bool``.
    """
    mask = mask_time_indices.to(torch.bool)
    return mask & (mask.sum(dim=1, keepdim=True) >= 2)


__all__ = ["has_negatives", "sample_negative_indices"]
