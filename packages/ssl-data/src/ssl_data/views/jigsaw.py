"""Jigsaw puzzle views (Noroozi and Favaro, 2016, arXiv:1603.09246): 3x3 shuffled tiles."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.randomness import uniform
from ssl_data.transforms import Compose, RandomOp, RandomResizedCrop
from ssl_data.views.pipeline import IMAGENET_MEAN, IMAGENET_STD, ViewPipeline, prepare_images

GRID = 3
NUM_TILES = GRID * GRID
TILE_STREAM = 1


@functools.lru_cache(maxsize=8)
def _permutation_set(n: int, seed: int) -> np.ndarray:
    candidates = np.array(list(itertools.permutations(range(NUM_TILES))), dtype=np.int8)
    total = len(candidates)
    chosen = [seed % total]
    score = np.zeros(total, dtype=np.int64)  # summed Hamming distance to the chosen set
    taken = np.zeros(total, dtype=bool)
    for _ in range(n - 1):
        j = chosen[-1]
        taken[j] = True
        score += np.count_nonzero(candidates != candidates[j], axis=1)
        chosen.append(int(np.argmax(np.where(taken, -1, score))))
    out = candidates[chosen].astype(np.int64)
    out.flags.writeable = False
    return out


def jigsaw_permutations(n: int, seed: int = 0) -> np.ndarray:
    """The fixed set of ``n`` tile permutations, chosen greedily for maximal Hamming distance.

    Algorithm (Noroozi and Favaro's Algorithm 1, deterministic):

    1. Candidates: all 9! = 362,880 permutations of ``0..8`` in lexicographic order
       (``itertools.permutations(range(9))``), numbered ``0 .. 362879``.
    2. The first chosen permutation is candidate ``seed % 362880``.
    3. Keep for every candidate the sum, over the chosen permutations, of the Hamming distance
       (number of positions where the two permutations differ, an integer 0..9).
    4. Repeat ``n - 1`` times: add the distances to the last chosen permutation to the sums,
       then choose the not-yet-chosen candidate with the largest sum; ties go to the lowest
       candidate number (``np.argmax`` of the sums with chosen ones set to -1).

    Args:
        n: Number of permutations, in ``[1, 9!]``.
        seed: Picks the first permutation (``seed % 9!``).

    Returns:
        ``(n, 9) int64`` permutations, in the order chosen (row 0 is the first).

    Raises:
        ValueError: ``n`` outside ``[1, 9!]`` or a negative seed.

    Reference: Noroozi and Favaro, "Unsupervised Learning of Visual Representations by Solving
    Jigsaw Puzzles", arXiv:1603.09246, Algorithm 1.
    """
    if not 1 <= n <= math.factorial(NUM_TILES):
        raise ValueError(f"n must be in [1, {math.factorial(NUM_TILES)}], got {n}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return _permutation_set(n, seed).copy()


@dataclass(frozen=True)
class JigsawView:
    """Nine tiles of each image, shuffled by one permutation of a fixed set, and its index.

    Defaults follow the paper: a random 225 x 225 crop (a square of (225/256)^2 of the image
    area, resized to 225 pixels), cut into a 3 x 3 grid of 75-pixel cells; a random 64 x 64 tile
    inside each cell (the gaps keep tiles from being matched by their edges); the tiles shuffled
    by one of 1,000 permutations from :func:`jigsaw_permutations`; each tile normalised to zero
    mean and unit variance per channel (the standard deviation floored at 0.01 so flat tiles stay
    finite). ``tiles[:, k]`` is cell ``perm[k]`` of the image, cells
    numbered row-major, so ``tiles[:, argsort(perm)]`` puts the cells back in order.

    Args:
        size: Side of the puzzle crop in pixels.
        tile_size: Side of each tile in pixels (<= ``size // 3``).
        num_permutations: Size of the permutation set (the classes to predict).
        permutation_seed: Seed of :func:`jigsaw_permutations`.
        scale: Crop area range, as a fraction of the image.
        ratio: Crop aspect-ratio range.
        normalize_tiles: Standardise each tile on its own (the paper), instead of ``mean``/``std``.
        mean: Per-channel means, used when ``normalize_tiles`` is False.
        std: Per-channel standard deviations, likewise.
        policy: Optional sampled policy applied after the crop.
        seed: Run seed.

    Raises:
        ValueError: ``tile_size`` above ``size // 3`` or below 1, or a bad ``num_permutations``.

    Reference: Noroozi and Favaro, "Unsupervised Learning of Visual Representations by Solving
    Jigsaw Puzzles", arXiv:1603.09246.
    """

    size: int = 225
    tile_size: int = 64
    num_permutations: int = 1000
    permutation_seed: int = 0
    scale: tuple[float, float] = ((225 / 256) ** 2, (225 / 256) ** 2)
    ratio: tuple[float, float] = (1.0, 1.0)
    normalize_tiles: bool = True
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    policy: RandomOp | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.tile_size <= self.size // GRID:
            raise ValueError(
                f"tile_size must be in [1, size // 3 = {self.size // GRID}], got {self.tile_size}"
            )
        if not 1 <= self.num_permutations <= math.factorial(NUM_TILES):
            raise ValueError(f"num_permutations must be in [1, 9!], got {self.num_permutations}")

    @property
    def permutations(self) -> np.ndarray:
        """``(num_permutations, 9) int64``: the permutation set."""
        return _permutation_set(self.num_permutations, self.permutation_seed)

    def __call__(
        self, images: torch.Tensor, indices: Sequence[int] | np.ndarray, epoch: int
    ) -> list[torch.Tensor]:
        """Shuffled tiles and the index of their permutation.

        Args:
            images: ``(B, H, W)`` or ``(B, C, H, W)``, uint8 in [0, 255] or float in [0, 1].
            indices: ``(B,)`` dataset indices (they seed the parameters).
            epoch: Epoch number.

        Returns:
            ``[tiles (B, 9, C, tile_size, tile_size) float32, perm_index (B,) int64]``.

        Raises:
            ValueError: Shapes disagree, or ``mean``/``std`` do not match the channel count.
        """
        x, idx = prepare_images(images, indices)
        crop = RandomResizedCrop(self.size, self.scale, self.ratio)
        mean, std = (None, None) if self.normalize_tiles else (self.mean, self.std)
        view = ViewPipeline(Compose((crop,)), mean=mean, std=std, policy=self.policy)
        v = view(x, idx, epoch, self.seed, 0)
        b, c = v.shape[:2]
        cell, t = self.size // GRID, self.tile_size
        cells = v[:, :, : GRID * cell, : GRID * cell].reshape(b, c, GRID, cell, GRID, cell)
        cells = cells.permute(0, 2, 4, 1, 3, 5).reshape(b, NUM_TILES, c, cell, cell)
        u = uniform(self.seed, epoch, idx, 1 + 2 * NUM_TILES, stream=TILE_STREAM)
        n = self.num_permutations
        perm_index = np.minimum((u[:, 0] * n).astype(np.int64), n - 1)
        offsets = np.floor(u[:, 1:] * (cell - t + 1)).astype(np.int64).reshape(b, NUM_TILES, 2)
        off = torch.from_numpy(offsets).to(v.device)
        span = torch.arange(t, device=v.device)
        rows = (off[:, :, 0, None] + span)[:, :, None, :, None].expand(b, NUM_TILES, c, t, cell)
        tiles = cells.gather(3, rows)
        cols = (off[:, :, 1, None] + span)[:, :, None, None, :].expand(b, NUM_TILES, c, t, t)
        tiles = tiles.gather(4, cols)
        perms = torch.from_numpy(self.permutations[perm_index]).to(v.device)
        tiles = torch.take_along_dim(tiles, perms[:, :, None, None, None], dim=1)
        if self.normalize_tiles:
            m = tiles.mean(dim=(-2, -1), keepdim=True)
            s = tiles.std(dim=(-2, -1), keepdim=True, unbiased=False)
            tiles = (tiles - m) / s.clamp_min(1e-2)
        return [tiles, torch.from_numpy(perm_index).to(v.device)]
