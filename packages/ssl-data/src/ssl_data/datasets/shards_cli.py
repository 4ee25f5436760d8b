"""``ssl-data shards write|info``: write WebDataset tar shards and describe them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ssl_data.datasets.corrupt import CorruptFiles
from ssl_data.datasets.idx import read_idx
from ssl_data.datasets.shard_index import open_index
from ssl_data.datasets.shard_writer import (
    array_samples,
    text_line_samples,
    write_image_folder_shards,
    write_shards,
)
from ssl_data.errors import SslDataError

KINDS = ("auto", "images", "array", "text")


def _load_array(path: Path) -> np.ndarray:
    """A ``.npy`` file (no pickles) or an IDX file (gzip or plain)."""
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    return read_idx(path)


def _kind(src: Path, kind: str) -> str:
    if kind != "auto":
        return kind
    if src.is_dir():
        return "images"
    if src.suffix == ".npy" or "idx" in src.name:
        return "array"
    return "text"


def write_command(args: argparse.Namespace) -> int:
    """Run ``ssl-data shards write``; returns the exit status."""
    src, out = Path(args.src), Path(args.outdir)
    kind = _kind(src, args.kind)
    common: dict[str, Any] = {"max_count": args.max_count, "prefix": args.prefix,
                              "progress": not args.quiet, "overwrite": args.overwrite}  # fmt: skip
    corrupt = CorruptFiles(args.on_corrupt)
    if kind == "images":
        index, corrupt = write_image_folder_shards(
            src, out, labelled=not args.unlabelled, recursive=not args.no_recursive,
            on_corrupt=args.on_corrupt, **common,
        )  # fmt: skip
    elif kind == "array":
        array = _load_array(src)
        labels = _load_array(Path(args.labels)) if args.labels else None
        index = write_shards(
            array_samples(array, labels), out, kind="array", total=len(array), **common
        )
    else:
        index = write_shards(text_line_samples(src), out, kind="text", **common)
    print(
        f"wrote {index.num_samples} {kind} samples to {len(index)} shards of at most "
        f"{index.max_count} in {out} (index: {out / 'index.json'}); "
        f"{corrupt.count} unreadable files skipped"
    )
    return 0


def info_command(args: argparse.Namespace) -> int:
    """Run ``ssl-data shards info``; returns the exit status."""
    index = open_index(args.src)
    counts = np.asarray(index.counts)
    print(
        f"{len(index)} shards, {index.num_samples} samples (per shard: min {counts.min()}, "
        f"max {counts.max()}), max_count {index.max_count}, kind {index.kind or 'unknown'}"
    )
    return 0


def _run(func: Any) -> Any:
    """Turn bad input (missing files, bad values, existing output) into a message + status 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except (SslDataError, ValueError, FileExistsError) as e:
            print(f"ssl-data shards: error: {e}", file=sys.stderr)
            return 2

    return run


def add_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``shards`` (with ``write`` and ``info``) on an ``add_subparsers()`` object.

    Returns:
        The ``shards`` parser; each leaf parser's ``func`` runs its command and returns the exit
        status.
    """
    shards = subparsers.add_parser(
        "shards",
        help="write WebDataset tar shards for streaming, or describe them",
        description="Write WebDataset tar shards (with an index.json of sample counts) for "
        "ssl_data.datasets.ShardStream, or describe existing shards.",
    )
    sub = shards.add_subparsers(dest="shards_command", required=True, metavar="ACTION")
    write = sub.add_parser(
        "write",
        help="write shards from an image folder, an array file or a text file",
        description="Write SRC into tar shards of at most --max-count samples under OUTDIR. "
        "SRC: an image folder (labelled by sub-folder unless --unlabelled), a .npy or IDX array "
        "file (one sample per row; --labels for labels), or a UTF-8 text file (one sample per "
        "non-empty line).",
    )
    write.add_argument("src", metavar="SRC", help="image folder, .npy/IDX file or text file")
    write.add_argument("outdir", metavar="OUTDIR", help="output folder for shards + index.json")
    write.add_argument("--max-count", type=int, required=True, metavar="N",
                       help="samples per shard (shards >= ranks x workers for streaming)")  # fmt: skip
    write.add_argument("--kind", choices=KINDS, default="auto",
                       help="source kind (auto: folder=images, .npy/*idx*=array, else text)")  # fmt: skip
    write.add_argument("--labels", metavar="FILE", help="labels .npy/IDX file for an array SRC")
    write.add_argument("--unlabelled", action="store_true",
                       help="image folder without class sub-folders")  # fmt: skip
    write.add_argument("--no-recursive", action="store_true", help="do not search sub-folders")
    write.add_argument("--on-corrupt", choices=("skip", "raise"), default="skip",
                       help="unreadable images: skip and count (default) or stop")  # fmt: skip
    write.add_argument("--prefix", default="shard", help="shard file name prefix")
    write.add_argument("--overwrite", action="store_true", help="replace shards in OUTDIR")
    write.add_argument("--quiet", action="store_true", help="no progress bar")
    write.set_defaults(func=_run(write_command))
    info = sub.add_parser("info", help="count the shards and samples of a shard folder",
                          description="Print shard and sample counts of SRC (a folder with "
                          "index.json, an index file, or tar files).")  # fmt: skip
    info.add_argument("src", metavar="SRC", help="shard folder, index.json or brace pattern")
    info.set_defaults(func=_run(info_command))
    return shards
