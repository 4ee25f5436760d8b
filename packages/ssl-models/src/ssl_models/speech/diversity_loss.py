"""The wav2vec 2.0 codebook diversity loss (entropy of the averaged codeword distribution)."""

from __future__ import annotations

import torch


def codebook_perplexity(
    probs: torch.Tensor, frame_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Sum over codebooks (groups) of the perplexity of the codeword distribution averaged over
    frames: ``sum_g exp(-sum_v pbar_gv log pbar_gv)``.

    Args:
        probs: ``(N, G, V)`` float, for N frames a distribution over V codewords in each of G
            codebooks (the softmax of the quantiser's logits, without Gumbel noise).
        frame_mask: ``(N,) bool``, the frames to average over (e.g. the real, unpadded frames);
            default all.

    Returns:
        Scalar float32 (float64 stays float64), in ``[G, G * V]``.

    Raises:
        ValueError: ``probs`` is not 3-D, the mask is not ``(N,)``, or it selects no frame.
    """
    if probs.ndim != 3:
        raise ValueError(f"probs must be (N, G, V), got {tuple(probs.shape)}")
    p = probs if probs.dtype in (torch.float32, torch.float64) else probs.float()
    if frame_mask is not None:
        if frame_mask.shape != p.shape[:1]:
            raise ValueError(f"frame_mask must be ({p.shape[0]},), got {tuple(frame_mask.shape)}")
        if not frame_mask.any():
            raise ValueError("frame_mask selects no frame")
        p = p[frame_mask.to(torch.bool)]
    mean = p.mean(dim=0)  # (G, V)
    return torch.exp(-torch.xlogy(mean, mean).sum(dim=-1)).sum()


def codebook_diversity_loss(
    perplexity: torch.Tensor, num_groups: int, num_vars: int
) -> torch.Tensor:
    """``L_d = (G V - perplexity) / (G V)``: 0 when every codeword of every codebook is used
    equally often, ``1 - 1/V`` when each codebook always picks one codeword.

    Args:
        perplexity: Scalar from :func:`codebook_perplexity`.
        num_groups: G codebooks.
        num_vars: V codewords per codebook.

    Returns:
        Scalar, the dtype of ``perplexity``.

    Raises:
        ValueError: ``num_groups`` or ``num_vars`` < 1.

    Reference: Baevski et al., arXiv:2006.11477, eq. (4) (written with the perplexity, as in the
    reference implementation).
    """
    if num_groups < 1 or num_vars < 1:
        raise ValueError(f"num_groups and num_vars must be >= 1, got {num_groups}, {num_vars}")
    gv = num_groups * num_vars
    return (gv - perplexity) / gv


__all__ = ["codebook_diversity_loss", "codebook_perplexity"]
