"""The list of a sharded dataset's tar files and their sample counts (a wids shard index).

The index is the JSON file the ``webdataset`` project defines for indexed access ("wids"):
``{"__kind__": "wids-shard-index-v1", "wids_version": 1, "shardlist": [{"url", "nsamples"}]}``,
with shard URLs relative to the index file's folder. ssl-data adds ``max_count`` (the most
samples a shard holds, which makes global sample indices ``shard × max_count + offset``),
``num_samples`` and ``kind`` (what the samples hold). Readers need the counts up front to split
an epoch between ranks and workers and to resume mid-epoch without reading the data again.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import braceexpand

from ssl_data.errors import CorruptFileError, DatasetNotFoundError

INDEX_NAME = "index.json"
INDEX_KIND = "wids-shard-index-v1"


def sample_key(member_name: str) -> tuple[str, str]:
    """Split a tar member name into WebDataset's ``(key, extension)``.

    The key is everything before the first dot of the file name (folders included), the
    extension everything after it: ``"a/000012.seg.png"`` -> ``("a/000012", "seg.png")``.
    """
    folder, _, base = member_name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext


def count_samples(path: str | Path) -> int:
    """Number of samples in a tar shard: runs of consecutive members sharing a key.

    Reads only the tar headers (data blocks are skipped by seeking).

    Raises:
        CorruptFileError: The file is not a readable tar.
    """
    count, last = 0, None
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _ = sample_key(member.name)
                if key != last:
                    count, last = count + 1, key
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CorruptFileError(f"cannot read shard {path}: {type(e).__name__}: {e}") from e
    return count


@dataclass(frozen=True)
class ShardIndex:
    """Shard files and how many samples each holds.

    Args:
        paths: Shard files in their canonical order (the order that numbers them).
        counts: Samples in each shard.
        max_count: Most samples in one shard (global index = shard number × max_count + offset
            for shards without stored indices).
        kind: What samples hold ("images", "array", "text", or "" when unknown).

    Raises:
        ValueError: ``paths`` and ``counts`` differ in length, or a count is negative.
    """

    paths: tuple[Path, ...]
    counts: tuple[int, ...]
    max_count: int = 0
    kind: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.counts) or min(self.counts, default=0) < 0:
            raise ValueError(f"{len(self.paths)} shards but counts {list(self.counts)[:8]}...")
        if self.max_count == 0:
            object.__setattr__(self, "max_count", max(self.counts, default=0))

    @property
    def num_samples(self) -> int:
        """Total number of samples."""
        return sum(self.counts)

    def __len__(self) -> int:
        return len(self.paths)

    def save(self, path: str | Path) -> Path:
        """Write the index as JSON (atomically: a temporary file, then a rename).

        Shard paths are stored relative to the index's folder when they are inside it.

        Returns:
            The index path.
        """
        path = Path(path)
        base = path.parent.resolve()
        shardlist = []
        for p, n in zip(self.paths, self.counts, strict=True):
            rp = p.resolve()
            url = rp.relative_to(base).as_posix() if rp.is_relative_to(base) else str(rp)
            shardlist.append({"url": url, "nsamples": n})
        doc = {"__kind__": INDEX_KIND, "wids_version": 1, **self.extra, "shardlist": shardlist,
               "max_count": self.max_count, "num_samples": self.num_samples, "kind": self.kind}  # fmt: skip
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ShardIndex:
        """Read an index written by :meth:`save` (or any wids shard index).

        Raises:
            DatasetNotFoundError: The file is missing.
            CorruptFileError: It is not a wids shard index.
        """
        path = Path(path)
        if not path.is_file():
            raise DatasetNotFoundError(f"shard index {path} not found")
        try:
            doc = json.loads(path.read_text())
            if doc.get("__kind__") != INDEX_KIND:
                raise ValueError(f"__kind__ is {doc.get('__kind__')!r}, expected {INDEX_KIND!r}")
            entries = doc["shardlist"]
            paths = tuple(path.parent / e["url"] for e in entries)
            counts = tuple(int(e["nsamples"]) for e in entries)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CorruptFileError(f"bad shard index {path}: {type(e).__name__}: {e}") from e
        return cls(paths, counts, int(doc.get("max_count", 0)), str(doc.get("kind", "")))

    @classmethod
    def scan(cls, shards: str | Sequence[str | Path]) -> ShardIndex:
        """Build an index by counting the samples of each shard (reads tar headers only).

        Args:
            shards: A brace pattern (``"data/shard-{000000..000009}.tar"``) or a list of paths.

        Raises:
            DatasetNotFoundError: A shard is missing, or there is none.
            CorruptFileError: A shard is not a readable tar.
        """
        items = [shards] if isinstance(shards, str) else list(shards)
        paths = [Path(p) for item in items for p in braceexpand.braceexpand(str(item))]
        if not paths:
            raise DatasetNotFoundError(f"no shard in {shards!r}")
        for p in paths:
            if not p.is_file():
                raise DatasetNotFoundError(f"shard {p} not found")
        return cls(tuple(paths), tuple(count_samples(p) for p in paths))


def open_index(source: str | Path | Sequence[str | Path]) -> ShardIndex:
    """The shard index of ``source``.

    Args:
        source: A folder holding ``index.json`` (as :func:`ssl_data.datasets.write_shards`
            writes), an index JSON file, a brace pattern or a list of tar files (then counted).

    Raises:
        DatasetNotFoundError: Nothing found at ``source``.
        CorruptFileError: An unreadable index or shard.
    """
    if isinstance(source, str | Path):
        p = Path(source)
        if p.is_dir():
            if (p / INDEX_NAME).is_file():
                return ShardIndex.load(p / INDEX_NAME)
            tars = sorted(p.glob("*.tar"))
            if not tars:
                raise DatasetNotFoundError(f"{p} holds neither {INDEX_NAME} nor .tar shards")
            return ShardIndex.scan([str(t) for t in tars])
        if p.suffix == ".json":
            return ShardIndex.load(p)
        if not p.exists() and "{" not in str(source):
            raise DatasetNotFoundError(
                f"{p} does not exist (expected a shard folder, an index .json, a .tar shard or "
                "a brace pattern such as shard-{000000..000009}.tar)"
            )
        return ShardIndex.scan(str(source))
    return ShardIndex.scan(source)
