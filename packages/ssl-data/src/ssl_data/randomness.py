"""Counter-based randomness: every random parameter is a pure function of its coordinates.

DESIGN.md fixes that each augmentation parameter is a function of (seed, epoch, sample index)
(and of a stream number naming which parameter it is), never of a generator state copied into
DataLoader workers. A hash of those coordinates gives the same numbers whichever worker, rank or
batch order asks, so the per-sample and batched paths agree, and a resumed run repeats itself.

The mixing function is SplitMix64 (Steele, Lea, Flood 2014, "Fast splittable pseudorandom number
generators", OOPSLA).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrap-around arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def _key(*coords: int) -> np.uint64:
    h = np.zeros((), dtype=np.uint64)
    for c in coords:
        h = _mix(h ^ np.uint64(c & 0xFFFFFFFFFFFFFFFF))
    return np.uint64(h)


def uniform(
    seed: int, epoch: int, indices: Sequence[int] | np.ndarray, num: int, stream: int = 0
) -> np.ndarray:
    """Uniform numbers in [0, 1) for each sample index, reproducible from their coordinates.

    Args:
        seed: Run seed.
        epoch: Epoch number (0-based).
        indices: ``(B,)`` integer sample indices in the dataset.
        num: How many numbers each sample gets.
        stream: Names the consumer (e.g. view 0 vs view 1) so that two consumers of the same
            sample draw independent numbers.

    Returns:
        ``(B, num) float64`` in [0, 1); row ``i`` depends only on
        ``(seed, epoch, indices[i], stream)``.

    Raises:
        ValueError: ``num`` < 1 or an index is negative.
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    if idx.size and idx.min() < 0:
        raise ValueError(f"sample indices must be >= 0, got {int(idx.min())}")
    base = _key(seed, epoch, stream)
    per_sample = _mix(base ^ idx.astype(np.uint64))
    with np.errstate(over="ignore"):
        counters = per_sample[:, None] + np.arange(1, num + 1, dtype=np.uint64)[None, :] * _GOLDEN
    bits = _mix(counters) >> np.uint64(11)  # 53 random bits -> exact float64 in [0, 1)
    return bits.astype(np.float64) * (1.0 / (1 << 53))
