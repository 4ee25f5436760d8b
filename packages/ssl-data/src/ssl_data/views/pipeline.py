"""One augmented view: geometric ops, an optional sampled policy, photometric ops, normalisation.

Every view generator in :mod:`ssl_data.views` is a list of :class:`ViewPipeline` objects, one per
view, each with its own random stream: view ``v`` reads
``uniform(seed, epoch, index, n, stream=v)`` for its geometric then photometric operations, and
its policy reads stream ``POLICY_STREAM + v``. A sample's view therefore depends only on
(seed, epoch, sample index, view), never on the batch it is in or the worker that builds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ssl_data.randomness import uniform
from ssl_data.transforms import (
    ColorJitter,
    Compose,
    GaussianBlur,
    RandomGrayscale,
    RandomOp,
    RandomResizedCrop,
    RandomSolarize,
    as_float_images,
    normalize,
)
from ssl_data.transforms.channels import check_images

POLICY_STREAM = 1 << 16
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_indices(indices: Sequence[int] | np.ndarray, batch: int) -> np.ndarray:
    """``indices`` as ``(batch,) int64``.

    Raises:
        ValueError: Not one index per image.
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.shape != (batch,):
        raise ValueError(f"indices must be ({batch},) (one per image), got {idx.shape}")
    return idx


def prepare_images(
    images: torch.Tensor, indices: Sequence[int] | np.ndarray
) -> tuple[torch.Tensor, np.ndarray]:
    """Images as ``(B, C, H, W) float32`` in [0, 1] and indices as ``(B,) int64``.

    Args:
        images: ``(B, H, W)`` or ``(B, C, H, W)``; uint8 in [0, 255] or float in [0, 1]; C in
            {1, 3, 4}.
        indices: ``(B,)`` dataset indices.

    Raises:
        ValueError: Bad shapes.
    """
    x = as_float_images(images)
    check_images(x)
    return x, check_indices(indices, x.shape[0])


@dataclass(frozen=True)
class ViewPipeline:
    """The operations of one view and the normalisation that ends it.

    Args:
        geometric: Operations that move pixels (crop, flip, affine), applied first.
        photometric: Operations that change values (jitter, grayscale, blur, solarise), applied
            after the policy.
        mean: Per-channel means for normalisation, or ``None`` to return [0, 1] images.
        std: Per-channel standard deviations, or ``None``.
        policy: Optional sampled policy (e.g. :class:`ssl_data.policies.RandAugment`) applied
            between the geometric and photometric operations, on its own random stream.
    """

    geometric: Compose
    photometric: Compose = field(default_factory=Compose)
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    policy: RandomOp | None = None

    def __call__(
        self, images: torch.Tensor, indices: np.ndarray, epoch: int, seed: int, stream: int
    ) -> torch.Tensor:
        """One view of a batch.

        Args:
            images: ``(B, C, H, W) float32`` in [0, 1] (see :func:`prepare_images`).
            indices: ``(B,) int64`` dataset indices.
            epoch: Epoch number.
            seed: Run seed.
            stream: The view's random stream (its view number).

        Returns:
            ``(B, C, H', W') float32``, normalised when ``mean``/``std`` are set.

        Raises:
            ValueError: ``mean``/``std`` do not match the channel count.
        """
        n_geo, n_photo = self.geometric.num_uniforms, self.photometric.num_uniforms
        u = uniform(seed, epoch, indices, max(1, n_geo + n_photo), stream)
        x = self.geometric(images, u[:, :n_geo])
        if self.policy is not None and self.policy.num_uniforms > 0:
            up = uniform(seed, epoch, indices, self.policy.num_uniforms, POLICY_STREAM + stream)
            x = self.policy(x, up)
        x = self.photometric(x, u[:, n_geo : n_geo + n_photo])
        if self.mean is None or self.std is None:
            return x
        return normalize(x, self.mean, self.std)


def contrastive_pipeline(
    *,
    size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    flip_p: float,
    jitter_p: float,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    grayscale_p: float,
    blur_p: float,
    blur_sigma: tuple[float, float],
    solarize_p: float,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    policy: RandomOp | None = None,
) -> ViewPipeline:
    """The SimCLR-family view: resized crop + flip, colour jitter, grayscale, blur, solarise.

    Uniform columns of the view's stream: crop (22), flip (1), jitter (6), grayscale (1),
    blur (2), solarise (1).

    Reference: Chen et al., arXiv:2002.05709, Appendix A; Grill et al., arXiv:2006.07733, Table 6.
    """
    geometric = Compose((RandomResizedCrop(size, scale, ratio, flip_p),))
    photometric = Compose(
        (
            ColorJitter(brightness, contrast, saturation, hue, jitter_p),
            RandomGrayscale(grayscale_p),
            GaussianBlur(blur_p, blur_sigma),
            RandomSolarize(solarize_p),
        )
    )
    return ViewPipeline(geometric, photometric, mean, std, policy)
