"""How one epoch of a sharded stream is split between ranks and DataLoader workers.

Everything here is a pure function of (seed, epoch, shard counts, world size, workers, batch
size), so every rank computes the same plan without communicating, and a resumed run can find
where each worker was from a single number: the batches its rank had consumed.

- Shard order: a permutation of the shards per epoch (counter-based, from (seed, epoch)).
- Slots: ``world_size × num_workers`` readers; slot ``rank × num_workers + worker`` reads the
  shards at positions ``slot, slot + slots, ...`` of the epoch's order (disjoint, and together
  every shard exactly once).
- Batches: a DataLoader with workers (``in_order=True``, the default) returns their batches
  round-robin, worker 0, 1, ..., skipping workers that are exhausted. :func:`round_robin_position`
  inverts that: after k batches, how many came from each worker and who comes next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ssl_data.randomness import uniform

SHARD_ORDER_STREAM = 1 << 40
SAMPLE_ORDER_STREAM = 1 << 41


def shard_order(num_shards: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The epoch's order of shard numbers.

    Returns:
        ``(num_shards,) int64`` permutation of ``0 .. num_shards - 1`` (identity without
        ``shuffle``); a pure function of (seed, epoch).
    """
    if not shuffle:
        return np.arange(num_shards, dtype=np.int64)
    u = uniform(seed, epoch, np.arange(num_shards), 1, SHARD_ORDER_STREAM)[:, 0]
    return np.argsort(u, kind="stable").astype(np.int64)


def block_order(
    seed: int, epoch: int, slot: int, start: int, stop: int, shuffle: bool = True
) -> np.ndarray:
    """The order in which a reader yields its sample positions ``start .. stop - 1``.

    Positions count the samples of the slot's shards in the epoch's order; a block of
    consecutive positions (the shuffle buffer) is permuted by counter-based numbers of
    (seed, epoch, slot, position), so any block can be rebuilt on resume without the ones before.

    Returns:
        ``(stop - start,) int64`` permutation of the positions.
    """
    positions = np.arange(start, stop, dtype=np.int64)
    if not shuffle or len(positions) < 2:
        return positions
    u = uniform(seed, epoch, positions, 1, SAMPLE_ORDER_STREAM + slot)[:, 0]
    return positions[np.argsort(u, kind="stable")]


def round_robin_position(
    batches: Sequence[int] | np.ndarray, consumed: int
) -> tuple[np.ndarray, list[int]]:
    """Where round-robin readers stand after ``consumed`` batches were taken from them.

    Readers are visited 0, 1, ..., W - 1, 0, 1, ..., each giving its next batch, a reader with
    no batch left being passed over: the order in which a DataLoader returns its workers'
    batches from an IterableDataset.

    Args:
        batches: ``(W,)`` batches each reader has in all.
        consumed: Batches taken so far, in [0, sum(batches)].

    Returns:
        ``(taken, next_order)``: ``(W,) int64`` batches taken from each reader, and the readers
        that still have batches, in the order the round robin visits them next (so a fresh
        round robin over readers in this order continues the same sequence).

    Raises:
        ValueError: ``consumed`` is out of range or a count is negative.
    """
    c = np.asarray(batches, dtype=np.int64).reshape(-1)
    if c.size and c.min() < 0:
        raise ValueError(f"batch counts must be >= 0, got {c.tolist()}")
    total = int(c.sum())
    if not 0 <= consumed <= total:
        raise ValueError(f"consumed batches must be in [0, {total}], got {consumed}")
    # Rounds [t0, t1) have the same set of active readers (those with more than t0 batches).
    rounds_done, in_round = int(c.max(initial=0)), 0
    base, t0 = 0, 0
    for t1 in np.unique(c):
        active = int((c > t0).sum())
        span = (int(t1) - t0) * active
        if consumed < base + span:
            rounds_done, in_round = t0 + (consumed - base) // active, (consumed - base) % active
            break
        base, t0 = base + span, int(t1)
    taken = np.minimum(c, rounds_done)
    taken[np.flatnonzero(c > rounds_done)[:in_round]] += 1
    order = sorted((w for w in range(len(c)) if c[w] > taken[w]), key=lambda w: (taken[w], w))
    return taken, order


@dataclass(frozen=True)
class EpochPlan:
    """One epoch's split of the shards between ``world_size × num_workers`` reader slots.

    Args:
        shards: Per slot, the shard numbers it reads, in reading order.
        samples: ``(slots,)`` samples per slot.
        batches: ``(slots,)`` batches each slot yields (after the equal-batches cut).
        batch_size: Samples per batch.
        num_workers: Readers per rank.
    """

    shards: tuple[tuple[int, ...], ...]
    samples: np.ndarray
    batches: np.ndarray
    batch_size: int
    num_workers: int

    def rank_batches(self, rank: int) -> np.ndarray:
        """``(num_workers,)`` batches of each reader of ``rank``."""
        return self.batches[rank * self.num_workers : (rank + 1) * self.num_workers]


def plan_epoch(
    counts: Sequence[int],
    *,
    seed: int,
    epoch: int,
    world_size: int,
    num_workers: int,
    batch_size: int,
    shuffle: bool = True,
    equal_batches: bool = True,
) -> EpochPlan:
    """Split an epoch's shards between ranks and workers.

    Args:
        counts: Samples in each shard (canonical order).
        seed: Run seed.
        epoch: Epoch number.
        world_size: Number of ranks.
        num_workers: Readers per rank (DataLoader workers; 1 for reading in the main process).
        batch_size: Samples per batch.
        shuffle: Shuffle the shard order per epoch.
        equal_batches: Cut every rank to the batch count of the rank with the fewest (DDP needs
            every rank to take the same number of steps); the cut batches are each rank's last
            ones in round-robin order.

    Raises:
        ValueError: Fewer shards than ``world_size × num_workers`` (every reader needs a shard),
            or a size below 1.
    """
    if world_size < 1 or num_workers < 1 or batch_size < 1:
        raise ValueError(
            f"world_size, num_workers and batch_size must be >= 1, got {world_size}, "
            f"{num_workers}, {batch_size}"
        )
    slots = world_size * num_workers
    if len(counts) < slots:
        raise ValueError(
            f"{len(counts)} shards cannot feed {world_size} ranks x {num_workers} workers: each "
            f"reader needs at least one shard; write at least {slots} shards (a smaller "
            "--max-count) or use fewer workers"
        )
    order = shard_order(len(counts), seed, epoch, shuffle)
    shards = tuple(tuple(int(s) for s in order[g::slots]) for g in range(slots))
    n = np.asarray(counts, dtype=np.int64)
    samples = np.array([int(n[list(s)].sum()) for s in shards], dtype=np.int64)
    batches = -(-samples // batch_size)
    if equal_batches and world_size > 1:
        per_rank = batches.reshape(world_size, num_workers)
        least = int(per_rank.sum(axis=1).min())
        batches = np.concatenate([round_robin_position(r, least)[0] for r in per_rank])
    return EpochPlan(shards, samples, batches, batch_size, num_workers)
