"""Rotation prediction (Gidaris et al., 2018, arXiv:1803.07728)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssl_models.methods.base import SSLMethod

NUM_ROTATIONS = 4


def make_rotations(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The four rotations of every image and their labels.

    Label k means a rotation by ``k * 90`` degrees counter-clockwise as the image is displayed
    (``torch.rot90(x, k, dims=(2, 3))``: row index downwards, column index to the right).

    Args:
        images: ``(B, C, H, W)`` float, square (H == W) so that every rotation has one shape.

    Returns:
        ``(rotated (4B, C, H, W), labels (4B,) int64)``, grouped by rotation: rows ``k*B:(k+1)*B``
        are all the images rotated by ``k * 90`` degrees, with label k.

    Raises:
        ValueError: ``images`` is not 4-d or not square.

    Reference: Gidaris et al., "Unsupervised Representation Learning by Predicting Image
    Rotations", arXiv:1803.07728, section 2.
    """
    if images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be (B, C, H, H) square, got {tuple(images.shape)}")
    b = images.shape[0]
    rotated = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(NUM_ROTATIONS)])
    labels = torch.arange(NUM_ROTATIONS, device=images.device).repeat_interleave(b)
    return rotated, labels


class RotationPrediction(SSLMethod):
    """Encoder -> linear head -> 4-way cross-entropy over the rotation (0/90/180/270 degrees).

    How the views are read: ``[images (N, C, H, W), labels (N,) int64]`` as made by ssl-data's
    rotation view or :func:`make_rotations` (labels in 0..3, k = k * 90 degrees), or
    ``[images (B, C, H, W)]`` alone, in which case :func:`make_rotations` builds the 4B rotated
    images and labels here. All rotations go through the encoder in one pass.

    Args:
        encoder: Backbone with ``output_dim``.

    Reference: Gidaris et al., "Unsupervised Representation Learning by Predicting Image
    Rotations", arXiv:1803.07728.
    """

    num_views = 2

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__(encoder)
        self.classifier = nn.Linear(self.embedding_dim, NUM_ROTATIONS)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Rotation logits ``(N, 4) float32`` of ``(N, C, H, W)`` images."""
        out: torch.Tensor = self.classifier(self.encoder(images))
        return out

    def training_loss(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy of the rotation labels.

        Args:
            views: ``[images (N, C, H, W) float32, labels (N,) int64]`` or ``[images]``.

        Returns:
            Scalar float32 loss.

        Raises:
            ValueError: Wrong number of views, labels not ``(N,)`` integers in 0..3.
        """
        if len(views) == 1:
            images, labels = make_rotations(views[0])
        elif len(views) == 2:
            images, labels = views
        else:
            raise ValueError(
                f"RotationPrediction needs [images, labels] or [images], got {len(views)} views"
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0] or labels.is_floating_point():
            raise ValueError(
                f"labels must be ({images.shape[0]},) integers, got {tuple(labels.shape)} "
                f"{labels.dtype}"
            )
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= NUM_ROTATIONS):
            raise ValueError(f"rotation labels must lie in 0..{NUM_ROTATIONS - 1}")
        return F.cross_entropy(self.logits(images).float(), labels.long())
