"""MAE's reconstruction loss: mean squared error on the masked patches, with per-patch normalised
pixel targets."""

from __future__ import annotations

import torch
from torch import nn


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping flattened patches, in the ViT's patch order.

    Args:
        images: ``(B, C, H, W)`` float, H and W multiples of ``patch_size``.
        patch_size: Patch side p in pixels.

    Returns:
        ``(B, L, p * p * C)`` with L = (H/p)(W/p) patches in row-major order; each patch is
        flattened as (row, column, channel), as in the official MAE code.

    Raises:
        ValueError: ``images`` is not 4-d or a side is not a multiple of ``patch_size``.
    """
    if images.ndim != 4 or images.shape[2] % patch_size or images.shape[3] % patch_size:
        raise ValueError(
            f"images must be (B, C, H, W) with H and W multiples of patch_size={patch_size}, "
            f"got {tuple(images.shape)}"
        )
    b, c, h, w = images.shape
    p = patch_size
    x = images.reshape(b, c, h // p, p, w // p, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


class MAELoss(nn.Module):
    """Mean squared error between predicted and target patches, averaged over masked patches only.

    With ``norm_pix_loss=True`` (the paper's default), each target patch is normalised by its own
    mean and variance: ``(x - mean) / sqrt(var + eps)``, where ``var`` is the unbiased variance
    over the patch's p*p*C values (``torch.var``'s default, as in the official code).

    Args:
        norm_pix_loss: Normalise each target patch by its mean and variance.
        eps: Added to the variance (1e-6).

    Shape:
        ``pred``: ``(B, L, P) float``; ``target``: ``(B, L, P) float`` (:func:`patchify` of the
        images); ``mask``: ``(B, L)`` bool or 0/1 float, 1/True = masked (the loss covers these).
        Output: scalar float32.

    Raises:
        ValueError: Shapes disagree or no patch is masked.

    Reference: He et al., "Masked Autoencoders Are Scalable Vision Learners", arXiv:2111.06377,
    section 3 ("Reconstruction target").
    """

    def __init__(self, norm_pix_loss: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm_pix_loss = norm_pix_loss
        self.eps = eps

    def normalized_targets(self, target: torch.Tensor) -> torch.Tensor:
        """Per-patch normalised targets ``(B, L, P) float32`` (identity when disabled)."""
        target = target.float()
        if not self.norm_pix_loss:
            return target
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        return (target - mean) / (var + self.eps) ** 0.5

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape or pred.ndim != 3 or tuple(mask.shape) != pred.shape[:2]:
            raise ValueError(
                f"pred and target must be (B, L, P) and mask (B, L), got {tuple(pred.shape)}, "
                f"{tuple(target.shape)} and {tuple(mask.shape)}"
            )
        weights = mask.float()
        denom = weights.sum()
        if denom <= 0:
            raise ValueError("mask selects no patch; the MAE loss covers masked patches only")
        per_patch = ((pred.float() - self.normalized_targets(target)) ** 2).mean(dim=-1)
        return (per_patch * weights).sum() / denom
