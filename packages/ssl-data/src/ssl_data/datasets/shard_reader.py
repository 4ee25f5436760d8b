"""A thin reader of WebDataset tar shards that can start at any sample without reading the ones
before it, and decodes a sample's members into tensors.

WebDataset's own pipeline (``webdataset.WebDataset``) reads the same files, but it only streams
from the start of a shard, keeps its shuffle state in ``random.Random`` objects that cannot be
saved, and drops bad samples through handlers that count nothing. Resuming mid-epoch and
counting corrupt samples need the three things this module does instead: seek past members by
their tar headers (``tarfile`` skips data blocks), group members into samples by key, and
report read errors to the caller's corrupt-file policy.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_data.datasets.image_decode import IMAGE_EXTENSIONS, ImageMode, decode_image
from ssl_data.datasets.shard_index import sample_key
from ssl_data.errors import CorruptFileError

Record = dict[str, bytes]
_IMAGE_EXTS = frozenset(e.lstrip(".") for e in IMAGE_EXTENSIONS)


def iter_records(path: str | Path, start: int = 0) -> Iterator[tuple[str, Record]]:
    """The samples of one tar shard, from sample number ``start`` on.

    Members are grouped into samples by WebDataset's rule (consecutive members sharing the part
    of the file name before its first dot). Members of skipped samples are never read.

    Args:
        path: The shard (``.tar``; compressed tars work but are read through to skip).
        start: Number of samples to skip.

    Yields:
        ``(key, {extension: bytes})`` per sample.

    Raises:
        CorruptFileError: The shard is missing or unreadable (e.g. truncated); the message names
            it and the sample where reading stopped.
    """
    key: str | None = None
    record: Record = {}
    number = -1
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                k, ext = sample_key(member.name)
                if k != key:
                    if key is not None and number >= start:
                        yield key, record
                    key, record, number = k, {}, number + 1
                if number >= start:
                    f = tar.extractfile(member)
                    record[ext] = f.read() if f is not None else b""
            if key is not None and number >= start:
                yield key, record
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CorruptFileError(
            f"cannot read shard {path} at sample {max(number, 0)}: {type(e).__name__}: {e}"
        ) from e


def decode_record(record: Record, mode: ImageMode = "RGB", name: str = "") -> dict[str, Any]:
    """Decode a sample's members by their extensions.

    Recognised members: an image (``png``, ``jpg``, ...; decoded with Pillow, EXIF orientation
    applied), ``npy`` (NumPy array, no pickles), ``txt`` (UTF-8), ``cls`` (integer label),
    ``json`` (metadata; its ``index`` is the sample's global index). Other members are ignored.

    Args:
        record: ``{extension: bytes}`` from :func:`iter_records`.
        mode: Colour mode of decoded images ("L", "RGB", "RGBA").
        name: How errors name the sample (e.g. ``"shard-000003.tar:000000312"``).

    Returns:
        A dict with any of ``image`` (``(C, H, W) uint8``), ``array`` (tensor of the stored
        dtype and shape), ``text`` (str), ``label`` (int), ``meta`` (dict).

    Raises:
        CorruptFileError: A member cannot be decoded, or the sample holds no image, array or text.
    """
    out: dict[str, Any] = {}
    for ext, data in record.items():
        last = ext.rsplit(".", 1)[-1].lower()
        try:
            if last in _IMAGE_EXTS and "image" not in out:
                out["image"] = decode_image(data, mode, name=f"{name}.{ext}")
            elif last == "npy":
                array = np.load(io.BytesIO(data), allow_pickle=False)
                out["array"] = torch.from_numpy(np.ascontiguousarray(array))
            elif last in ("txt", "text"):
                out["text"] = data.decode("utf-8")
            elif last in ("cls", "class"):
                out["label"] = int(data.decode("ascii").strip())
            elif last == "json":
                out["meta"] = json.loads(data.decode("utf-8"))
        except CorruptFileError:
            raise
        except (ValueError, OSError, EOFError) as e:  # bad npy header, UTF-8, int, JSON
            raise CorruptFileError(f"cannot decode {name}.{ext}: {type(e).__name__}: {e}") from e
    if not {"image", "array", "text"} & out.keys():
        raise CorruptFileError(
            f"sample {name} has no image, npy or txt member (members: {sorted(record)})"
        )
    return out
