"""Fortune-cookie quotations labelled by category (the fortune file they come from).

The BSD ``fortune`` databases are plain text files, one per category (``science``, ``politics``,
``zippy``, ...), quotations separated by lines holding only ``%``. Debian's ``fortunes`` and
``fortunes-min`` install 43 categories, about 15k quotations, in ``/usr/share/games/fortunes``.
The ``.dat`` index files and the ``.u8`` links next to them are not categories, and the
``off/`` folder (the separately packaged offensive set) is never read.

ssl-data ships a real sample for machines without those packages: the first 25 quotations of
each of the 43 categories (1,024 quotations), same format.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from ssl_data.datasets.corrupt import CorruptFiles, OnCorrupt
from ssl_data.datasets.text_files import LabelledTexts, open_text
from ssl_data.errors import DatasetNotFoundError

DEBIAN_ROOT = Path("/usr/share/games/fortunes")
ENV_VAR = "SSL_DATA_FORTUNES"
_NOT_CATEGORIES = (".dat", ".u8", ".pos", ".sh", ".md")  # indexes, links, scripts, READMEs


def bundled_sample_root() -> Path:
    """Folder of the real fortunes sample shipped inside ssl-data."""
    return Path(str(resources.files("ssl_data") / "samples" / "fortunes"))


def fortune_categories(root: str | Path) -> tuple[str, ...]:
    """The category files in ``root``, sorted: regular files that are not ``.dat``/``.u8``
    indexes, READMEs (``.md``), links or hidden files (``off/`` and other folders are left out)."""
    folder = Path(root)
    if not folder.is_dir():
        return ()
    return tuple(
        sorted(
            p.name
            for p in folder.iterdir()
            if p.is_file()
            and not p.is_symlink()
            and not p.name.startswith(".")
            and p.suffix not in _NOT_CATEGORIES
        )
    )


def fortunes_root() -> Path:
    """Where fortunes are read from: ``$SSL_DATA_FORTUNES``, else Debian's folder.

    Falls back to the bundled sample when neither holds a category file.
    """
    env = os.environ.get(ENV_VAR)
    for root in ([Path(env)] if env else []) + [DEBIAN_ROOT]:
        if fortune_categories(root):
            return root
    return bundled_sample_root()


def read_fortune_file(path: str | Path) -> list[str]:
    """The quotations of one fortune file, in order.

    A quotation is the text between two ``%`` lines, trailing newline removed; blank ones are
    left out.

    Raises:
        OSError: The file cannot be read.
        UnicodeDecodeError: The file is not UTF-8.
    """
    quotes: list[str] = []
    current: list[str] = []
    with open_text(path) as fh:
        for line in fh:
            if line.rstrip("\n") == "%":
                quotes.append("".join(current))
                current = []
            else:
                current.append(line)
    quotes.append("".join(current))
    return [q.rstrip("\n") for q in quotes if q.strip()]


def load_fortunes(
    root: str | Path | None = None,
    categories: Sequence[str] | None = None,
    on_corrupt: OnCorrupt = "skip",
) -> LabelledTexts:
    """Load fortune quotations labelled by category.

    Args:
        root: Folder of fortune files. Default: :func:`fortunes_root` (``$SSL_DATA_FORTUNES``,
            Debian's ``/usr/share/games/fortunes``, else the bundled sample).
        categories: Which categories to read (default: every one in ``root``); labels index
            this tuple, in the order given.
        on_corrupt: ``"skip"`` (log and count an undecodable file; its category keeps its label
            but has no quotations) or ``"raise"``.

    Returns:
        :class:`LabelledTexts`: ``texts`` the quotations, ``labels (N,) int64`` into
        ``label_names`` (the categories), ``ids`` like ``"science:12"`` (category and position).

    Raises:
        DatasetNotFoundError: ``root`` holds no fortune file.
        ValueError: A requested category is not in ``root`` (the message lists the ones there).
        CorruptFileError: A file is undecodable and ``on_corrupt="raise"``.
    """
    folder = Path(root) if root is not None else fortunes_root()
    available = fortune_categories(folder)
    if not available:
        raise DatasetNotFoundError(
            f"no fortune files in {folder}; install Debian's fortunes, set ${ENV_VAR}, or leave "
            "root unset for the bundled sample"
        )
    names = tuple(categories) if categories is not None else available
    missing = [c for c in names if c not in available]
    if missing:
        raise ValueError(f"unknown fortune categories {missing}; {folder} has {list(available)}")
    corrupt = CorruptFiles(on_corrupt)
    texts: list[str] = []
    labels: list[int] = []
    ids: list[str] = []
    for label, name in enumerate(names):
        try:
            quotes = read_fortune_file(folder / name)
        except (OSError, UnicodeDecodeError) as e:
            corrupt.handle(folder / name, e)
            continue
        texts += quotes
        labels += [label] * len(quotes)
        ids += [f"{name}:{i}" for i in range(len(quotes))]
    return LabelledTexts(
        texts=texts,
        labels=np.asarray(labels, dtype=np.int64),
        label_names=names,
        ids=ids,
        skipped=list(corrupt.skipped),
    )
