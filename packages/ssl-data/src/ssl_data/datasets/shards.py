"""Streaming a sharded dataset: disjoint shards per rank and worker, seeded shuffling, resume.

Reference: the WebDataset format (Aizman, Maltby, Breuel, "High Performance I/O For Large Scale
Deep Learning", arXiv:2001.01858); shards written by :func:`ssl_data.datasets.write_shards`
read with ``webdataset.WebDataset`` too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from ssl_data.datasets.corrupt import CorruptFiles, OnCorrupt
from ssl_data.datasets.image_decode import ImageMode, check_mode
from ssl_data.datasets.shard_index import ShardIndex, open_index
from ssl_data.datasets.shard_reader import Record, decode_record, iter_records
from ssl_data.datasets.stream_plan import EpochPlan, block_order, plan_epoch, round_robin_position
from ssl_data.errors import CorruptFileError
from ssl_data.views.view_dataset import ViewGenerator, collate_views

logger = logging.getLogger("ssl_data")
# A raw position: (shard number, offset in the shard, key, members) or None where unreadable.
_Raw = tuple[int, int, str, Record] | None


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Collate decoded samples field by field.

    Tensors of one shape are stacked (``(B, ...)``), integers become an ``(B,) int64`` tensor,
    anything else (images of different sizes, texts, metadata) stays a list.
    """
    out: dict[str, Any] = {}
    for name in samples[0]:
        values = [s.get(name) for s in samples]
        first = values[0]
        if isinstance(first, torch.Tensor) and all(
            isinstance(v, torch.Tensor) and v.shape == first.shape for v in values
        ):
            out[name] = torch.stack(values)  # type: ignore[arg-type]  # checked: all tensors
        elif isinstance(first, int) and all(isinstance(v, int) for v in values):
            out[name] = torch.tensor(values, dtype=torch.int64)
        else:
            out[name] = values
    return out


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if (rank is None) != (world_size is None):
        raise ValueError(f"give both rank and world_size or neither, got {rank}, {world_size}")
    if rank is None or world_size is None:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return rank, world_size


class ShardStream(IterableDataset[Any]):
    """Batches from WebDataset tar shards, split between distributed ranks and DataLoader workers.

    Use it with ``DataLoader(stream, batch_size=None, num_workers=stream.num_workers)``: the
    stream batches itself, because a batch is fixed by the sample positions it covers, not by
    how many of them decode, which makes resuming exact.

    Per epoch (all pure functions of (seed, epoch, ...), see :mod:`~ssl_data.datasets.stream_plan`):

    - The shard order is permuted from (seed, epoch); reader slot ``rank × num_workers + worker``
      takes every ``world_size × num_workers``-th shard of it, so ranks and workers read
      disjoint shards and together every sample exactly once.
    - Each reader permutes its samples within consecutive blocks of ``shuffle_buffer`` samples
      from (seed, epoch, slot, position), then cuts them into batches of ``batch_size`` (its
      last batch may be smaller).
    - With ``equal_batches`` every rank yields as many batches as the rank with the fewest
      (so DDP ranks take the same number of steps); shards of equal size lose nothing.

    Samples carry a global, stable ``index``: the ``index`` stored in the sample's ``json`` member
    (:func:`~ssl_data.datasets.write_shards` writes it), else ``shard number × max_count +
    offset``. View generators seed their random parameters from it.

    Position: :meth:`state_dict` records (epoch, batches this rank consumed);
    :meth:`load_state_dict` on a fresh stream makes the next iteration yield exactly the rest of
    that epoch (readers skip by tar headers; nothing before the current shuffle block is read).
    Call :meth:`set_epoch` before each epoch (not with ``persistent_workers=True``, whose workers
    keep the epoch they started with).

    Corrupt data follows ``on_corrupt``: ``"skip"`` drops an undecodable sample (its batch is one
    smaller) or the unreadable rest of a shard, counts it in :attr:`corrupt` (per process) and
    logs the shard and key (logger ``ssl_data``, WARNING); ``"raise"`` raises
    :class:`~ssl_data.errors.CorruptFileError`. A batch none of whose samples decodes raises
    under either policy.

    Args:
        source: Shards: a folder with ``index.json``, an index file, a brace pattern or a list
            of tar files (see :func:`~ssl_data.datasets.shard_index.open_index`).
        batch_size: Samples per batch (per rank).
        num_workers: The DataLoader's ``num_workers`` (0: read in the main process).
        seed: Run seed.
        epoch: Starting epoch.
        shuffle: Shuffle shard order and samples (off: canonical order, useful for evaluation).
        shuffle_buffer: Samples per shuffle block (held in memory as encoded bytes).
        rank: This rank; default from ``torch.distributed`` when initialised, else 0.
        world_size: Number of ranks; default likewise, else 1.
        equal_batches: See above.
        mode: Colour mode of decoded images ("L", "RGB", "RGBA").
        on_corrupt: ``"skip"`` or ``"raise"``.
        view_generator: Optional view generator (:mod:`ssl_data.views`): each item becomes the
            views of its image (or array) as in :class:`~ssl_data.views.ViewDataset`, and
            batches are :func:`~ssl_data.views.collate_views` lists of ``(B, C, H, W)`` tensors.
        collate_fn: Turns a list of items into a batch; default :func:`collate_samples` (or
            :func:`collate_views` with a view generator).

    Raises:
        ValueError: A bad size, rank, mode or policy, or fewer shards than
            ``world_size × max(1, num_workers)`` readers.
        DatasetNotFoundError: No shards at ``source``.
        CorruptFileError: An unreadable index (or shard, when counting them).
    """

    def __init__(
        self,
        source: str | Path | Sequence[str | Path] | ShardIndex,
        *,
        batch_size: int,
        num_workers: int = 0,
        seed: int = 0,
        epoch: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 1000,
        rank: int | None = None,
        world_size: int | None = None,
        equal_batches: bool = True,
        mode: ImageMode = "RGB",
        on_corrupt: OnCorrupt = "skip",
        view_generator: ViewGenerator | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ):
        if batch_size < 1 or shuffle_buffer < 1 or num_workers < 0:
            raise ValueError(
                f"batch_size and shuffle_buffer must be >= 1 and num_workers >= 0, got "
                f"{batch_size}, {shuffle_buffer}, {num_workers}"
            )
        self.index = source if isinstance(source, ShardIndex) else open_index(source)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.epoch = epoch
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.rank, self.world_size = _rank_and_world(rank, world_size)
        self.equal_batches = equal_batches
        self.mode = check_mode(mode)
        self.corrupt = CorruptFiles(on_corrupt)
        self.view_generator = view_generator
        self.collate_fn = collate_fn or (collate_views if view_generator else collate_samples)
        self._resume: tuple[int, int] | None = None  # (epoch, batches consumed)
        self.plan()  # fail now, not in a worker, when there are too few shards

    @property
    def readers(self) -> int:
        """Readers per rank: the DataLoader workers, or 1 in the main process."""
        return max(1, self.num_workers)

    def plan(self, epoch: int | None = None) -> EpochPlan:
        """The split of ``epoch`` (default: the current one) between ranks and workers."""
        return plan_epoch(
            self.index.counts, seed=self.seed, epoch=self.epoch if epoch is None else epoch,
            world_size=self.world_size, num_workers=self.readers, batch_size=self.batch_size,
            shuffle=self.shuffle, equal_batches=self.equal_batches,
        )  # fmt: skip

    def __len__(self) -> int:
        """Batches this rank yields in the current epoch (counted from its start)."""
        return int(self.plan().rank_batches(self.rank).sum())

    def set_epoch(self, epoch: int) -> None:
        """Read ``epoch`` next (a loaded position of another epoch is dropped)."""
        self.epoch = epoch
        if self._resume is not None and self._resume[0] != epoch:
            self._resume = None

    def state_dict(self, batches_consumed: int) -> dict[str, int]:
        """The position after this rank consumed ``batches_consumed`` batches of the epoch.

        Args:
            batches_consumed: Batches this rank's DataLoader returned in the current epoch.

        Returns:
            JSON-ready ``{"epoch", "batches", "samples", "seed", "world_size", "num_workers",
            "batch_size", "num_shards"}`` (``samples``: the samples those batches cover).

        Raises:
            ValueError: ``batches_consumed`` outside [0, len(self)].
        """
        plan = self.plan()
        done, _ = round_robin_position(plan.rank_batches(self.rank), batches_consumed)
        first = self.rank * self.readers
        samples = sum(
            min(int(d) * self.batch_size, int(plan.samples[first + w])) for w, d in enumerate(done)
        )
        return {"epoch": self.epoch, "batches": batches_consumed, "samples": samples,
                "seed": self.seed, "world_size": self.world_size, "num_workers": self.num_workers,
                "batch_size": self.batch_size, "num_shards": len(self.index)}  # fmt: skip

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a position saved by :meth:`state_dict`: the next iteration yields the
        rest of that epoch, batch for batch as the interrupted run would have.

        Raises:
            ValueError: The state was saved with another seed, world size, worker count, batch
                size or shard count (the epoch's split would differ).
        """
        for name in ("seed", "world_size", "num_workers", "batch_size"):
            if state[name] != getattr(self, name):
                raise ValueError(
                    f"position saved with {name}={state[name]}, this stream has "
                    f"{name}={getattr(self, name)}; resume with the same setting"
                )
        if state["num_shards"] != len(self.index):
            raise ValueError(
                f"position saved for {state['num_shards']} shards, found {len(self.index)}"
            )
        self.epoch = int(state["epoch"])
        round_robin_position(self.plan().rank_batches(self.rank), int(state["batches"]))  # range
        self._resume = (self.epoch, int(state["batches"]))

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if workers != self.readers:
            raise ValueError(
                f"ShardStream(num_workers={self.num_workers}) is read by "
                f"{'a DataLoader with ' + str(workers) + ' workers' if info else 'the main process'}"
                "; pass the DataLoader's num_workers to the stream"
            )
        plan = self.plan()
        counts = plan.rank_batches(self.rank)
        reader, skip = worker, 0
        if self._resume is not None and self._resume[0] == self.epoch:
            # A fresh DataLoader starts its round robin at worker 0: let worker j play the
            # reader that was j-th next in the interrupted run's round robin.
            taken, order = round_robin_position(counts, self._resume[1])
            if worker >= len(order):
                return
            reader, skip = order[worker], int(taken[order[worker]])
        slot = self.rank * self.readers + reader
        yield from self._batches(plan, slot, skip, int(counts[reader]))

    def _raw_positions(self, shards: Sequence[int], start: int) -> Iterator[_Raw]:
        """The slot's samples from position ``start`` on, ``None`` where unreadable."""
        offset = start
        for s in shards:
            n = self.index.counts[s]
            if offset >= n:
                offset -= n
                continue
            path = self.index.paths[s]
            got = offset
            try:
                for key, record in iter_records(path, offset):
                    if got >= n:
                        raise CorruptFileError(
                            f"shard {path} holds more than the {n} samples its index lists"
                        )
                    yield s, got, key, record
                    got += 1
                if got < n:
                    raise CorruptFileError(f"shard {path} ends after {got} of {n} samples")
            except CorruptFileError as e:
                self.corrupt.handle(path, e)
            yield from (None for _ in range(max(0, n - got)))
            offset = 0

    def _item(self, raw: _Raw) -> Any:
        """A decoded item, or ``None`` for an unreadable sample under "skip"."""
        if raw is None:
            return None
        s, offset, key, record = raw
        name = f"{self.index.paths[s]}:{key}"
        try:
            sample = decode_record(record, self.mode, name)
        except CorruptFileError as e:
            self.corrupt.handle(name, e)
            return None
        meta = sample.get("meta")
        stored = meta.get("index") if isinstance(meta, dict) else None
        index = int(stored) if stored is not None else s * self.index.max_count + offset
        sample = {"index": index, "key": key, **sample}
        if self.view_generator is None:
            return sample
        image = sample.get("image", sample.get("array"))
        if image is None or image.ndim not in (2, 3):
            raise ValueError(f"sample {name} holds no (H, W) or (C, H, W) image for the views")
        return list(self.view_generator(image.unsqueeze(0), np.array([index]), self.epoch))

    def _batches(self, plan: EpochPlan, slot: int, skip: int, limit: int) -> Iterator[Any]:
        """Batches ``skip .. limit - 1`` of reader ``slot``."""
        size, block = self.batch_size, self.shuffle_buffer
        end = min(limit * size, int(plan.samples[slot]))
        first = skip * size
        if first >= end:
            return
        start = (first // block) * block
        raw = self._raw_positions(plan.shards[slot], start)
        batch: list[Any] = []
        for lo in range(start, end, block):
            hi = min(lo + block, int(plan.samples[slot]))
            records = [next(raw) for _ in range(hi - lo)]
            order = block_order(self.seed, self.epoch, slot, lo, hi, self.shuffle)
            for q in range(max(lo, first), min(hi, end)):
                item = self._item(records[int(order[q - lo]) - lo])
                if item is not None:
                    batch.append(item)
                if (q + 1) % size == 0 or q + 1 == end:
                    if not batch:
                        raise CorruptFileError(
                            f"no sample of batch {q // size} of reader {slot} could be read "
                            f"(shards {[str(self.index.paths[s]) for s in plan.shards[slot]]})"
                        )
                    yield self.collate_fn(batch)
                    batch = []
