"""Jigsaw puzzles (Noroozi & Favaro, 2016, arXiv:1603.09246) and their permutation set."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssl_models.methods.base import SSLMethod

_MAX_TILES = 9


@functools.lru_cache(maxsize=8)
def _permutation_set(num_permutations: int, num_tiles: int, seed: int) -> np.ndarray:
    flat = itertools.chain.from_iterable(itertools.permutations(range(num_tiles)))
    candidates = np.fromiter(flat, dtype=np.int8).reshape(-1, num_tiles)
    # One row per tile position: comparing a position at a time is ~15x faster than row-wise.
    columns = np.ascontiguousarray(candidates.T)
    score = np.zeros(len(candidates), dtype=np.int64)
    available = np.ones(len(candidates), dtype=bool)
    chosen: list[int] = []
    j = seed % len(candidates)
    for _ in range(num_permutations):
        chosen.append(j)
        available[j] = False
        distance = np.zeros(len(candidates), dtype=np.int16)
        for position in range(num_tiles):
            distance += columns[position] != candidates[j, position]
        score += distance
        j = int(np.argmax(np.where(available, score, -1)))
    out = candidates[chosen].astype(np.int64)
    out.flags.writeable = False
    return out


def jigsaw_permutations(
    num_permutations: int = 100, num_tiles: int = 9, seed: int = 0
) -> np.ndarray:
    """The maximal-Hamming-distance permutation set of the paper, built deterministically.

    The algorithm (the paper's Algorithm 1, with the random first pick replaced by ``seed`` so
    that any implementation, in any language, gets the same set; ssl-data keeps a copy of it):

    1. ``candidates`` = all ``num_tiles!`` permutations of ``0 .. num_tiles - 1`` in
       lexicographic order (Python's ``itertools.permutations(range(num_tiles))``).
    2. ``j = seed mod num_tiles!``; ``score[c] = 0`` for every candidate c.
    3. Repeat ``num_permutations`` times: append ``candidates[j]`` to the set and remove it from
       the candidates; add to ``score[c]`` the Hamming distance (number of positions that
       differ) between ``candidates[j]`` and every candidate c, so ``score[c]`` is the total
       distance from c to the set; then let j be the remaining candidate with the largest
       score, the one that comes first in lexicographic order on ties.

    Args:
        num_permutations: Size N of the set (100 in the paper's main experiments), in
            ``1 .. num_tiles!``.
        num_tiles: Tiles per puzzle (9: a 3x3 grid), in ``2 .. 9``.
        seed: Index (mod ``num_tiles!``) of the first permutation in lexicographic order.

    Returns:
        ``(N, num_tiles) int64``, row i is permutation class i (read-only; copy to modify).

    Raises:
        ValueError: ``num_tiles`` outside 2..9 or ``num_permutations`` outside 1..num_tiles!.

    Reference: Noroozi & Favaro, "Unsupervised Learning of Visual Representations by Solving
    Jigsaw Puzzles", arXiv:1603.09246, section 3.2 and Algorithm 1.
    """
    if not 2 <= num_tiles <= _MAX_TILES:
        raise ValueError(f"num_tiles must be in 2..{_MAX_TILES}, got {num_tiles}")
    if not 1 <= num_permutations <= math.factorial(num_tiles):
        raise ValueError(
            f"num_permutations must be in 1..{math.factorial(num_tiles)} for {num_tiles} tiles, "
            f"got {num_permutations}"
        )
    return _permutation_set(num_permutations, num_tiles, seed)


def min_hamming_distance(permutations: np.ndarray) -> int:
    """Smallest Hamming distance between two different rows of ``(N, T)`` permutations (N >= 2).

    Raises:
        ValueError: Fewer than two rows.
    """
    perms = np.asarray(permutations)
    if perms.ndim != 2 or perms.shape[0] < 2:
        raise ValueError(f"need (N, T) permutations with N >= 2, got shape {perms.shape}")
    dist = (perms[:, None, :] != perms[None, :, :]).sum(axis=2)
    np.fill_diagonal(dist, perms.shape[1] + 1)
    return int(dist.min())


def make_jigsaw_puzzles(
    images: torch.Tensor, permutations: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut images into a 3x3 grid of tiles and shuffle them by a random permutation of the set.

    Tile order: ``tiles[b, i]`` is the tile at grid position ``perm[i]`` (row-major positions
    0..8) of image b, where ``perm = permutations[index[b]]``. Images whose side is not a
    multiple of 3 lose their last rows/columns.

    Args:
        images: ``(B, C, H, W)`` float, H and W >= 3.
        permutations: ``(N, 9) int64`` permutation set (:func:`jigsaw_permutations`).
        generator: RNG for the permutation indices (torch's global RNG when None).

    Returns:
        ``(tiles (B, 9, C, H // 3, W // 3), index (B,) int64)``.

    Raises:
        ValueError: ``images`` not 4-d or smaller than 3x3, or ``permutations`` not ``(N, 9)``.
    """
    if images.ndim != 4 or images.shape[2] < 3 or images.shape[3] < 3:
        raise ValueError(f"images must be (B, C, H, W) with H, W >= 3, got {tuple(images.shape)}")
    if permutations.ndim != 2 or permutations.shape[1] != 9:
        raise ValueError(f"permutations must be (N, 9), got {tuple(permutations.shape)}")
    b, c, h, w = images.shape
    th, tw = h // 3, w // 3
    grid = images[:, :, : 3 * th, : 3 * tw].reshape(b, c, 3, th, 3, tw)
    grid = grid.permute(0, 2, 4, 1, 3, 5).reshape(b, 9, c, th, tw)
    index = torch.randint(len(permutations), (b,), generator=generator).to(images.device)
    order = permutations.to(images.device)[index]  # (B, 9)
    tiles = torch.gather(grid, 1, order.view(b, 9, 1, 1, 1).expand(-1, -1, c, th, tw))
    return tiles, index


class Jigsaw(SSLMethod):
    """Shared encoder on each tile, concatenated tile features -> MLP -> permutation class.

    How the views are read: ``[tiles (B, T, C, h, w) float32, index (B,) int64]`` where
    ``index[b]`` is the class of the permutation that shuffled sample b (a row of
    :attr:`permutations`, ssl-data's jigsaw view makes these), or ``[images (B, C, H, W)]``
    alone, in which case :func:`make_jigsaw_puzzles` cuts and shuffles them here (T = 9). All
    B*T tiles go through the encoder in one pass.

    Args:
        encoder: Backbone with ``output_dim``, applied to every tile.
        num_permutations: Permutation classes N (100 in the paper).
        hidden_dim: Hidden width of the MLP on the concatenated tile features.
        num_tiles: Tiles per puzzle T (9).
        permutation_seed: ``seed`` of :func:`jigsaw_permutations`.

    Reference: Noroozi & Favaro, "Unsupervised Learning of Visual Representations by Solving
    Jigsaw Puzzles", arXiv:1603.09246.
    """

    num_views = 2

    permutations: torch.Tensor

    def __init__(
        self,
        encoder: nn.Module,
        num_permutations: int = 100,
        hidden_dim: int = 1024,
        num_tiles: int = 9,
        permutation_seed: int = 0,
    ) -> None:
        super().__init__(encoder)
        if hidden_dim < 1:
            raise ValueError(f"hidden_dim must be >= 1, got {hidden_dim}")
        perms = jigsaw_permutations(num_permutations, num_tiles, permutation_seed)
        # Not saved in the state dict: it is a pure function of the constructor arguments.
        self.register_buffer("permutations", torch.from_numpy(perms.copy()), persistent=False)
        self.num_permutations = num_permutations
        self.num_tiles = num_tiles
        self.classifier = nn.Sequential(
            nn.Linear(num_tiles * self.embedding_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, num_permutations),
        )

    def logits(self, tiles: torch.Tensor) -> torch.Tensor:
        """Permutation logits ``(B, N) float32`` of ``(B, T, C, h, w)`` tiles."""
        if tiles.ndim != 5 or tiles.shape[1] != self.num_tiles:
            raise ValueError(
                f"tiles must be (B, {self.num_tiles}, C, h, w), got {tuple(tiles.shape)}"
            )
        b = tiles.shape[0]
        features = self.encoder(tiles.flatten(0, 1))  # (B*T, D), tile-major within a sample
        out: torch.Tensor = self.classifier(features.reshape(b, -1))
        return out

    def training_loss(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy of the permutation classes.

        Args:
            views: ``[tiles (B, T, C, h, w) float32, index (B,) int64]`` or ``[images]``.

        Returns:
            Scalar float32 loss.

        Raises:
            ValueError: Wrong number of views, or ``index`` not ``(B,)`` integers in 0..N-1.
        """
        if len(views) == 1:
            if self.num_tiles != 9:
                raise ValueError(f"[images] views need num_tiles=9, got {self.num_tiles}")
            tiles, index = make_jigsaw_puzzles(views[0], self.permutations)
        elif len(views) == 2:
            tiles, index = views
        else:
            raise ValueError(f"Jigsaw needs [tiles, index] or [images], got {len(views)} views")
        if index.ndim != 1 or index.shape[0] != tiles.shape[0] or index.is_floating_point():
            raise ValueError(
                f"index must be ({tiles.shape[0]},) integers, got {tuple(index.shape)} {index.dtype}"
            )
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_permutations):
            raise ValueError(f"permutation indices must lie in 0..{self.num_permutations - 1}")
        return F.cross_entropy(self.logits(tiles).float(), index.long())
