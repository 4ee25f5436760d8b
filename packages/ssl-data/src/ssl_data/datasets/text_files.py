"""Text corpora from files: one text per line, or one JSON object per line (JSONL).

Also :class:`LabelledTexts`, the in-memory form every labelled text set in ssl-data returns
(WordNet glosses, fortunes, rotten-tomatoes snippets).

A file is read whole or not at all: a file that cannot be opened, decompressed or decoded as
UTF-8, or a JSONL file with a bad line, goes to the :class:`~ssl_data.datasets.corrupt.CorruptFiles`
policy (skip and count with its path logged, or raise), so a corpus never silently loses part of a
file.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, overload

import numpy as np

from ssl_data.datasets.corrupt import CorruptFiles, OnCorrupt
from ssl_data.errors import CorruptFileError, DatasetNotFoundError

_READ_ERRORS = (OSError, EOFError, UnicodeDecodeError, lzma.LZMAError)


def open_text(path: str | Path) -> IO[str]:
    """Open a UTF-8 text file for reading, decompressing ``.gz``, ``.bz2`` and ``.xz`` on the fly.

    Decoding errors are strict (they raise ``UnicodeDecodeError`` while reading), so an
    undecodable file is noticed rather than read as replacement characters.

    Raises:
        OSError: The file cannot be opened.
    """
    p = Path(path)
    kwargs: dict[str, Any] = {"encoding": "utf-8", "errors": "strict", "newline": None}
    if p.suffix == ".gz":
        return gzip.open(p, "rt", **kwargs)
    if p.suffix == ".bz2":
        return bz2.open(p, "rt", **kwargs)
    if p.suffix == ".xz":
        return lzma.open(p, "rt", **kwargs)
    return open(p, **kwargs)


def read_text_file(
    path: str | Path, *, jsonl_field: str | None = None, skip_blank: bool = True
) -> list[str]:
    """Every text in one file: its lines, or the ``jsonl_field`` string of each JSONL record.

    Args:
        path: A UTF-8 text file, optionally ``.gz``/``.bz2``/``.xz`` compressed.
        jsonl_field: ``None`` reads one text per line (trailing newline removed); a name reads
            the file as JSONL and takes that string field of every record.
        skip_blank: Leave out blank lines (and, for JSONL, records whose text is blank).

    Returns:
        The texts in file order.

    Raises:
        DatasetNotFoundError: ``path`` does not exist.
        CorruptFileError: The file cannot be read, decompressed or decoded as UTF-8, or a JSONL
            line is not a JSON object with a string ``jsonl_field`` (the message names the line).
    """
    p = Path(path)
    if not p.exists():
        raise DatasetNotFoundError(f"text file {p} not found")
    texts: list[str] = []
    try:
        with open_text(p) as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.rstrip("\n")
                if jsonl_field is None:
                    if not (skip_blank and not line.strip()):
                        texts.append(line)
                    continue
                if not line.strip():
                    continue
                text = _jsonl_text(line, jsonl_field, p, lineno)
                if not (skip_blank and not text.strip()):
                    texts.append(text)
    except _READ_ERRORS as e:
        raise CorruptFileError(f"cannot read {p}: {type(e).__name__}: {e}") from e
    return texts


def _jsonl_text(line: str, name: str, path: Path, lineno: int) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise CorruptFileError(f"{path}:{lineno} is not valid JSON ({e})") from e
    if not isinstance(record, dict) or name not in record:
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise CorruptFileError(f"{path}:{lineno} has no field {name!r} (found {keys})")
    text = record[name]
    if not isinstance(text, str):
        raise CorruptFileError(
            f"{path}:{lineno} field {name!r} is {type(text).__name__}, expected a string"
        )
    return text


def iter_text_files(
    paths: Iterable[str | Path],
    *,
    jsonl_field: str | None = None,
    skip_blank: bool = True,
    corrupt: CorruptFiles | None = None,
) -> Iterator[tuple[Path, list[str]]]:
    """Read files one at a time, applying the corrupt-file policy.

    Args:
        paths: Text or JSONL files (see :func:`read_text_file`).
        jsonl_field: As in :func:`read_text_file`.
        skip_blank: As in :func:`read_text_file`.
        corrupt: The policy and record of skipped files; default: a new ``"skip"`` policy.

    Yields:
        ``(path, texts)`` for every readable file; unreadable ones are skipped (and counted in
        ``corrupt``) or raise, by its policy.

    Raises:
        DatasetNotFoundError: A path does not exist (a missing file is a wrong argument, not a
            corrupt file).
        CorruptFileError: A file is unreadable and the policy is ``"raise"``.
    """
    policy = corrupt if corrupt is not None else CorruptFiles("skip")
    for path in paths:
        p = Path(path)
        try:
            texts = read_text_file(p, jsonl_field=jsonl_field, skip_blank=skip_blank)
        except CorruptFileError as e:
            # Name the underlying read error when there is one; a bad JSONL line keeps its message.
            cause = e.__cause__
            policy.handle(p, cause if isinstance(cause, _READ_ERRORS) else e)
            continue
        yield p, texts


class TextFileDataset(Sequence[str]):
    """Texts from line files or JSONL files, held in memory, one dataset item per text.

    Args:
        paths: Files to read, in order (``.gz``/``.bz2``/``.xz`` decompressed).
        jsonl_field: ``None`` for one text per line; a field name to read JSONL records.
        skip_blank: Leave out blank lines / blank texts.
        on_corrupt: ``"skip"`` (log, count in :attr:`corrupt`, go on) or ``"raise"``.

    Attributes:
        texts: Every text, in file order.
        sources: ``(N,)`` index into :attr:`paths` of the file each text came from.
        corrupt: The record of skipped files (``corrupt.count``, ``corrupt.skipped``).

    Raises:
        DatasetNotFoundError: A path does not exist.
        CorruptFileError: A file is unreadable and ``on_corrupt="raise"``.
        ValueError: ``on_corrupt`` is not ``"skip"`` or ``"raise"``.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        *,
        jsonl_field: str | None = None,
        skip_blank: bool = True,
        on_corrupt: OnCorrupt = "skip",
    ):
        self.paths = [Path(p) for p in paths]
        self.corrupt = CorruptFiles(on_corrupt)
        self.texts: list[str] = []
        sources: list[np.ndarray] = []
        index = {p: i for i, p in enumerate(self.paths)}
        for p, texts in iter_text_files(
            self.paths, jsonl_field=jsonl_field, skip_blank=skip_blank, corrupt=self.corrupt
        ):
            self.texts.extend(texts)
            sources.append(np.full(len(texts), index[p], dtype=np.int64))
        self.sources = np.concatenate(sources) if sources else np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.texts)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        return self.texts[i]


@dataclass(frozen=True)
class LabelledTexts(Sequence[tuple[str, int]]):
    """A labelled text set in memory: ``texts[i]`` has label ``labels[i]`` named ``label_names``.

    Attributes:
        texts: ``N`` texts.
        labels: ``(N,) int64`` class indices into :attr:`label_names`.
        label_names: The name of every class (also classes with no text in this set).
        ids: ``N`` stable identifiers of where each text came from (e.g. ``"noun:00001740"``).
        skipped: ``(path, reason)`` of every file skipped as unreadable.
    """

    texts: list[str]
    labels: np.ndarray
    label_names: tuple[str, ...]
    ids: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.texts)
        if self.labels.shape != (n,) or len(self.ids) != n:
            raise ValueError(
                f"texts ({n}), labels {self.labels.shape} and ids ({len(self.ids)}) disagree"
            )
        if n and not (self.labels.min() >= 0 and self.labels.max() < len(self.label_names)):
            raise ValueError(f"labels must lie in [0, {len(self.label_names)})")

    def __len__(self) -> int:
        return len(self.texts)

    @overload
    def __getitem__(self, i: int) -> tuple[str, int]: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[str, int]]: ...
    def __getitem__(self, i: int | slice) -> tuple[str, int] | list[tuple[str, int]]:
        if isinstance(i, slice):
            return list(zip(self.texts[i], self.labels[i].tolist(), strict=True))
        return self.texts[i], int(self.labels[i])

    def counts(self) -> dict[str, int]:
        """Number of texts per class name (classes without texts included, as 0)."""
        bins = np.bincount(self.labels, minlength=len(self.label_names))
        return dict(zip(self.label_names, bins.tolist(), strict=True))
