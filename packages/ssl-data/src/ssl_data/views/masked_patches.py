"""Masked-patch views for MAE and SimMIM: an augmented image and a random patch mask."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.randomness import uniform
from ssl_data.transforms import Compose, RandomOp, RandomResizedCrop
from ssl_data.views.pipeline import IMAGENET_MEAN, IMAGENET_STD, ViewPipeline, prepare_images

MASK_STREAM = 1


def random_patch_mask(u: np.ndarray, num_masked: int) -> np.ndarray:
    """Mask the ``num_masked`` patches with the smallest uniforms in each row (MAE's shuffle).

    Args:
        u: ``(B, L) float64`` uniforms, one per patch.
        num_masked: Patches to mask per sample, in ``[0, L]``.

    Returns:
        ``(B, L) bool`` mask, True = masked, exactly ``num_masked`` True per row.

    Raises:
        ValueError: ``num_masked`` outside ``[0, L]``.
    """
    b, length = u.shape
    if not 0 <= num_masked <= length:
        raise ValueError(f"num_masked must be in [0, {length}], got {num_masked}")
    order = np.argsort(u, axis=1, kind="stable")
    mask = np.zeros((b, length), dtype=bool)
    np.put_along_axis(mask, order[:, :num_masked], True, axis=1)
    return mask


@dataclass(frozen=True)
class MaskedPatchView:
    """One augmented view and a random mask over its ``patch_size`` x ``patch_size`` patches.

    Defaults are MAE's: random resized crop to 224 with area scale (0.2, 1), horizontal flip,
    16-pixel patches, mask ratio 0.75 (SimMIM: ``mask_ratio=0.6``; its 32-pixel mask patches are
    ``patch_size=32``). Exactly ``round(mask_ratio * L)`` of the ``L = (size / patch_size)^2``
    patches are masked in every sample, chosen uniformly (the mask has its own random stream).
    Patches are numbered row-major, as ViT's patch embedding flattens them.

    Args:
        size: Output side in pixels (a multiple of ``patch_size``).
        patch_size: Patch side in pixels.
        mask_ratio: Fraction of patches masked, in [0, 1].
        scale: Crop area range.
        ratio: Crop aspect-ratio range.
        flip_p: Probability of a horizontal flip.
        mean: Per-channel means for normalisation.
        std: Per-channel standard deviations.
        policy: Optional sampled policy applied after the crop.
        seed: Run seed.

    Raises:
        ValueError: ``size`` not a positive multiple of ``patch_size`` or ``mask_ratio`` outside
            [0, 1].

    Reference: He et al., "Masked Autoencoders Are Scalable Vision Learners", arXiv:2111.06377;
    Xie et al., "SimMIM: A Simple Framework for Masked Image Modeling", arXiv:2111.09886.
    """

    size: int = 224
    patch_size: int = 16
    mask_ratio: float = 0.75
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    policy: RandomOp | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.patch_size < 1 or self.size < 1 or self.size % self.patch_size:
            raise ValueError(
                f"size must be a positive multiple of patch_size, got {self.size}, "
                f"{self.patch_size}"
            )
        if not 0.0 <= self.mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1], got {self.mask_ratio}")

    @property
    def num_patches(self) -> int:
        """L, patches per image."""
        return (self.size // self.patch_size) ** 2

    @property
    def num_masked(self) -> int:
        """``round(mask_ratio * L)`` masked patches per image."""
        return round(self.mask_ratio * self.num_patches)

    def __call__(
        self, images: torch.Tensor, indices: Sequence[int] | np.ndarray, epoch: int
    ) -> list[torch.Tensor]:
        """The view and its patch mask.

        Args:
            images: ``(B, H, W)`` or ``(B, C, H, W)``, uint8 in [0, 255] or float in [0, 1].
            indices: ``(B,)`` dataset indices (they seed the parameters).
            epoch: Epoch number.

        Returns:
            ``[images (B, C, size, size) float32, mask (B, L) bool]`` with True = masked.

        Raises:
            ValueError: Shapes disagree, or ``mean``/``std`` do not match the channel count.
        """
        x, idx = prepare_images(images, indices)
        crop = RandomResizedCrop(self.size, self.scale, self.ratio, self.flip_p)
        pipeline = ViewPipeline(Compose((crop,)), mean=self.mean, std=self.std, policy=self.policy)
        view = pipeline(x, idx, epoch, self.seed, 0)
        u = uniform(self.seed, epoch, idx, self.num_patches, stream=MASK_STREAM)
        mask = torch.from_numpy(random_patch_mask(u, self.num_masked)).to(view.device)
        return [view, mask]
