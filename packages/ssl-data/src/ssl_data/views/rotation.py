"""Rotation prediction views (Gidaris et al., 2018, arXiv:1803.07728): 4 rotations + labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.transforms import Compose, RandomFlip, RandomOp, RandomResizedCrop
from ssl_data.views.pipeline import IMAGENET_MEAN, IMAGENET_STD, ViewPipeline, prepare_images


@dataclass(frozen=True)
class RotationView:
    """Each image rotated by 0, 90, 180 and 270 degrees, labelled 0, 1, 2, 3.

    Label ``r`` is a counter-clockwise rotation by ``r * 90`` degrees, i.e.
    ``torch.rot90(image, r, dims=(-2, -1))`` = ``np.rot90(image, r, axes=(-2, -1))``. Outputs are
    sample-major (the 4 rotations of sample 0, then of sample 1, ...), so a batch of one gives
    one sample's 4 views and concatenating per-sample outputs gives the batched output. The
    image is first (optionally) cropped and flipped; the paper's default uses the whole image.

    Args:
        size: Side of a random resized crop taken first, or ``None`` to use the (square) image
            as it is.
        scale: Crop area range (when ``size`` is set).
        ratio: Crop aspect-ratio range.
        flip_p: Probability of a horizontal flip before rotating.
        mean: Per-channel means for normalisation.
        std: Per-channel standard deviations.
        policy: Optional sampled policy applied before rotating.
        seed: Run seed.

    Raises:
        ValueError: A size below 1.

    Reference: Gidaris, Singh and Komodakis, "Unsupervised Representation Learning by
    Predicting Image Rotations", arXiv:1803.07728.
    """

    size: int | None = None
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.0
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    policy: RandomOp | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.size is not None and self.size < 1:
            raise ValueError(f"size must be >= 1 pixel or None, got {self.size}")

    def __call__(
        self, images: torch.Tensor, indices: Sequence[int] | np.ndarray, epoch: int
    ) -> list[torch.Tensor]:
        """Rotated views and their labels.

        Args:
            images: ``(B, H, W)`` or ``(B, C, H, W)``, uint8 in [0, 255] or float in [0, 1];
                square unless ``size`` is set.
            indices: ``(B,)`` dataset indices (they seed the parameters).
            epoch: Epoch number.

        Returns:
            ``[images (4B, C, S, S) float32, labels (4B,) int64]``; row ``4 b + r`` is sample
            ``b`` rotated by ``r * 90`` degrees counter-clockwise.

        Raises:
            ValueError: A non-square image without ``size``, or mismatched ``mean``/``std``.
        """
        x, idx = prepare_images(images, indices)
        if self.size is None:
            if x.shape[2] != x.shape[3]:
                raise ValueError(
                    f"rotation needs square images or size=..., got {tuple(x.shape[2:])}"
                )
            geometric = Compose((RandomFlip(self.flip_p, 0.0),))
        else:
            geometric = Compose(
                (RandomResizedCrop(self.size, self.scale, self.ratio, self.flip_p),)
            )
        view = ViewPipeline(geometric, mean=self.mean, std=self.std, policy=self.policy)
        v = view(x, idx, epoch, self.seed, 0)
        rotated = torch.stack([torch.rot90(v, r, dims=(-2, -1)) for r in range(4)], dim=1)
        labels = torch.arange(4, dtype=torch.int64, device=v.device).repeat(v.shape[0])
        return [rotated.flatten(0, 1), labels]
