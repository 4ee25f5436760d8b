"""Writing WebDataset tar shards (with ``webdataset.TarWriter``) from folders, arrays and text.

Each sample gets the key ``f"{index:09d}"`` and a ``json`` member holding its global ``index``
(its position in the source order, = shard number × max_count + offset) and where it came from,
so readers recover a stable sample index whatever order they read shards in.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm
from webdataset import TarWriter  # type: ignore[import-untyped]

from ssl_data.datasets.corrupt import CorruptFiles, OnCorrupt
from ssl_data.datasets.image_decode import decode_image
from ssl_data.datasets.image_folder import UNLABELLED, ImageFolder
from ssl_data.datasets.shard_index import INDEX_NAME, ShardIndex
from ssl_data.errors import CorruptFileError, DatasetNotFoundError


def image_folder_samples(folder: ImageFolder) -> Iterator[dict[str, Any]]:
    """Samples of an image folder for :func:`write_shards`: the encoded file as it is stored.

    Every image is decoded once to check it; files that fail go to ``folder.corrupt`` (skipped
    and counted, or raising, by its policy), so shards only hold decodable images.

    Yields:
        ``{"<ext>": bytes, "cls": int (labelled folders), "json": {"source", "class"}}``.
    """
    for path, label in zip(folder.paths, folder.labels.tolist(), strict=True):
        try:
            data = path.read_bytes()
            decode_image(data, folder.mode, name=str(path))
        except (OSError, CorruptFileError) as e:
            folder.corrupt.handle(path, e)
            continue
        meta: dict[str, Any] = {"source": path.relative_to(folder.root).as_posix()}
        sample: dict[str, Any] = {path.suffix.lower().lstrip("."): data}
        if label != UNLABELLED:
            sample["cls"] = label
            meta["class"] = folder.classes[label]
        sample["json"] = meta
        yield sample


def array_samples(array: np.ndarray, labels: np.ndarray | None = None) -> Iterator[dict[str, Any]]:
    """Rows of an array for :func:`write_shards`, stored exactly as ``.npy`` members.

    Args:
        array: ``(N, ...)`` any dtype (e.g. ``(N, 28, 28) uint8`` images).
        labels: Optional ``(N,)`` integer labels (``.cls`` members).

    Raises:
        ValueError: ``labels`` does not have one entry per row.
    """
    if labels is not None and np.shape(labels) != (len(array),):
        raise ValueError(f"labels must be ({len(array)},), got {np.shape(labels)}")
    for i in range(len(array)):
        sample: dict[str, Any] = {"npy": np.ascontiguousarray(array[i]), "json": {"row": i}}
        if labels is not None:
            sample["cls"] = int(labels[i])
        yield sample


def text_line_samples(path: str | Path) -> Iterator[dict[str, Any]]:
    """Non-empty lines of a UTF-8 text file for :func:`write_shards` (``.txt`` members).

    Raises:
        DatasetNotFoundError: The file is missing.
        CorruptFileError: It is not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"text file {path} not found")
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                text = line.rstrip("\r\n")
                if text.strip():
                    yield {"txt": text, "json": {"source": path.name, "line": number}}
    except UnicodeDecodeError as e:
        raise CorruptFileError(f"{path} is not UTF-8 text: {e}") from e


def shard_name(prefix: str, number: int) -> str:
    """File name of shard ``number``: ``f"{prefix}-{number:06d}.tar"``."""
    return f"{prefix}-{number:06d}.tar"


def write_shards(
    samples: Iterable[dict[str, Any]],
    outdir: str | Path,
    *,
    max_count: int,
    prefix: str = "shard",
    kind: str = "",
    total: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> ShardIndex:
    """Write samples into tar shards of at most ``max_count`` samples, plus ``index.json``.

    Shards are written under a temporary name and renamed when complete, and the index last,
    so an interrupted run never leaves a shard that looks complete. Member encoding is
    ``webdataset``'s: bytes as they are, ``str`` as UTF-8, ``int`` for ``cls`` as ASCII, NumPy
    arrays for ``npy`` with ``numpy.save``, dicts for ``json`` as JSON.

    Args:
        samples: Dicts ``{extension: value}`` (see :func:`image_folder_samples`,
            :func:`array_samples`, :func:`text_line_samples`); a ``json`` dict gets the global
            ``index`` added.
        outdir: Output folder (created).
        max_count: Samples per shard (the last may hold fewer).
        prefix: Shard file name prefix.
        kind: What samples hold, recorded in the index ("images", "array", "text").
        total: Number of samples, for the progress bar.
        progress: Show a tqdm progress bar (on stderr).
        overwrite: Replace an index and ``{prefix}-*.tar`` shards already in ``outdir``.

    Returns:
        The written :class:`ShardIndex`.

    Raises:
        ValueError: ``max_count`` < 1, or no samples.
        FileExistsError: ``outdir`` already holds shards or an index and ``overwrite`` is off.
    """
    if max_count < 1:
        raise ValueError(f"max_count must be >= 1, got {max_count}")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    existing = sorted(out.glob(f"{prefix}-*.tar")) + [p for p in [out / INDEX_NAME] if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out} already holds {len(existing)} shard/index files (e.g. {existing[0].name}); "
            "choose an empty folder or overwrite"
        )
    for p in existing:
        p.unlink()
    paths: list[Path] = []
    counts: list[int] = []
    writer: Any = None
    bar = tqdm(total=total, unit="sample", desc=f"writing {out}", disable=not progress)

    def partial(path: Path) -> Path:
        return path.with_name(path.name + ".partial")

    try:
        for index, sample in enumerate(samples):
            if index % max_count == 0:
                if writer is not None:
                    writer.close()
                    os.replace(partial(paths[-1]), paths[-1])
                paths.append(out / shard_name(prefix, len(paths)))
                counts.append(0)
                writer = TarWriter(
                    str(partial(paths[-1])), mtime=0
                )  # int: no PAX header per member
            record = dict(sample)
            record["json"] = {"index": index, **record.get("json", {})}
            record["__key__"] = f"{index:09d}"
            writer.write(record)
            counts[-1] += 1
            bar.update(1)
    except BaseException:
        if writer is not None:
            writer.close()
            partial(paths[-1]).unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    if writer is not None:
        writer.close()
        os.replace(partial(paths[-1]), paths[-1])
    if not paths:
        raise ValueError("no samples to write")
    index_file = ShardIndex(tuple(paths), tuple(counts), max_count, kind)
    index_file.save(out / INDEX_NAME)
    return index_file


def write_image_folder_shards(
    root: str | Path,
    outdir: str | Path,
    *,
    max_count: int,
    labelled: bool = True,
    recursive: bool = True,
    on_corrupt: OnCorrupt = "skip",
    **kwargs: Any,
) -> tuple[ShardIndex, CorruptFiles]:
    """Shards of an image folder (see :class:`ImageFolder` and :func:`write_shards`).

    Returns:
        The index and the record of skipped files (header check and decode check together).

    Raises:
        As :class:`ImageFolder` and :func:`write_shards`.
    """
    folder = ImageFolder(root, labelled=labelled, recursive=recursive, on_corrupt=on_corrupt)
    index = write_shards(
        image_folder_samples(folder), outdir, max_count=max_count, kind="images",
        total=len(folder), **kwargs,
    )  # fmt: skip
    return index, folder.corrupt
