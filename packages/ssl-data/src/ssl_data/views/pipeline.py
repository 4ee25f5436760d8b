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
    images: torch.Tensor, indices: Sequence[int] | np.ndarray, *, as_float: bool = True
) -> tuple[torch.Tensor, np.ndarray]:
    """Images as ``(B, C, H, W)`` (float32 in [0, 1] by default) and indices as ``(B,) int64``.

    Args:
        images: ``(B, H, W)`` or ``(B, C, H, W)``; uint8 in [0, 255] or float in [0, 1]; C in
            {1, 3, 4}.
        indices: ``(B,)`` dataset indices.
        as_float: Convert to float32 in [0, 1]; ``False`` keeps the dtype (a
            :class:`ViewPipeline` converts chunk by chunk, which saves a full-batch float copy).

    Raises:
        ValueError: Bad shapes.
    """
    x = as_float_images(images) if as_float else images
    if x.ndim == 3:
        x = x.unsqueeze(1)
    check_images(x)
    return x, check_indices(indices, x.shape[0])


# Images per chunk are chosen so that one chunk holds about this many float32 values (4 MiB):
# a chunk's temporaries then stay in the CPU caches across the view's operations, and the
# allocator reuses them instead of faulting in fresh pages for every full-batch temporary. For
# SimCLR views of 256 x 3 x 224 x 224 uint8 images on one CPU thread this cut page faults ~10x
# and time ~2.3x (2.4 s -> 1.05 s for both views); a batch of 256 x 3 x 32 x 32 is one chunk.
CHUNK_VALUES = 1 << 20


def chunk_rows(images: torch.Tensor) -> int:
    """Images per chunk for a ``(B, C, H, W)`` batch (at least 1; see ``CHUNK_VALUES``).

    On CPU only: an accelerator is fastest on the whole batch (fewer kernel launches).
    """
    if images.device.type != "cpu":
        return max(1, images.shape[0])
    per_image = images.shape[1] * images.shape[2] * images.shape[3]
    return max(1, CHUNK_VALUES // max(1, per_image))


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

        Every operation is per sample, so the batch is processed in chunks of
        :func:`chunk_rows` images (one chunk for small images): the result is the same as one
        pass over the whole batch, with the temporaries kept cache-sized.

        Args:
            images: ``(B, C, H, W)``, float32 in [0, 1] or uint8 in [0, 255] (see
                :func:`prepare_images`).
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
        up = None
        if self.policy is not None and self.policy.num_uniforms > 0:
            up = uniform(seed, epoch, indices, self.policy.num_uniforms, POLICY_STREAM + stream)
        b = images.shape[0]
        rows = chunk_rows(images)
        first = self._run(images[:rows], u[:rows], None if up is None else up[:rows])
        if rows >= b:
            return first
        out = torch.empty((b, *first.shape[1:]), dtype=first.dtype, device=first.device)
        out[:rows] = first
        for start in range(rows, b, rows):
            part = slice(start, start + rows)
            out[part] = self._run(images[part], u[part], None if up is None else up[part])
        return out

    def _run(self, images: torch.Tensor, u: np.ndarray, up: np.ndarray | None) -> torch.Tensor:
        """The view of one chunk, given its rows of the view's and the policy's uniforms."""
        n_geo, n_photo = self.geometric.num_uniforms, self.photometric.num_uniforms
        x = self.geometric(images, u[:, :n_geo])
        if self.policy is not None and up is not None:
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
