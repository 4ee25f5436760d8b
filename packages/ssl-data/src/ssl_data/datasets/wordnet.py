"""WordNet 3.0 glosses labelled with their supersense (the synset's lexicographer file).

Every synset line of WordNet's ``data.{noun,verb,adj,adv}`` files carries, in its second field,
the number of the lexicographer file the synset was written in: one of 45 coarse classes such as
``noun.animal`` or ``verb.motion`` (Ciaramita & Johnson 2003 call them supersenses). Its gloss
(after ``|``) is a definition, often followed by quoted examples. That makes 117,659 real short
texts with a 45-way label.

The full set comes from Debian's ``wordnet-base`` (``/usr/share/wordnet``). ssl-data ships a real
sample for machines without it: the first 90 synsets (in file order) of every lexicographer file,
3,924 glosses with all 45 labels, the original lines gzip-compressed, licence header included.

Reference: Miller, "WordNet: a lexical database for English", CACM 1995; file format in
``wndb(5WN)``, label names in ``lexnames(5WN)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from ssl_data.datasets.corrupt import CorruptFiles, OnCorrupt
from ssl_data.datasets.text_files import LabelledTexts, open_text
from ssl_data.errors import CorruptFileError, DatasetNotFoundError

DEBIAN_ROOT = Path("/usr/share/wordnet")
ENV_VAR = "SSL_DATA_WORDNET"
PARTS = ("noun", "verb", "adj", "adv")

# lexnames(5WN): lexicographer file number -> name; used when the dictionary has no lexnames file.
SUPERSENSES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
)  # fmt: skip


def bundled_sample_root() -> Path:
    """Folder of the real WordNet sample shipped inside ssl-data (``data.*.gz``)."""
    return Path(str(resources.files("ssl_data") / "samples" / "wordnet"))


def _data_file(root: Path, part: str) -> Path | None:
    for name in (f"data.{part}", f"data.{part}.gz"):
        if (root / name).is_file():
            return root / name
    return None


def wordnet_root() -> Path:
    """Where WordNet is read from: ``$SSL_DATA_WORDNET``, else Debian's ``/usr/share/wordnet``.

    Falls back to the bundled sample when neither holds ``data.noun``.
    """
    env = os.environ.get(ENV_VAR)
    for root in ([Path(env)] if env else []) + [DEBIAN_ROOT]:
        if _data_file(root, "noun") is not None:
            return root
    return bundled_sample_root()


def supersense_names(root: str | Path | None = None) -> tuple[str, ...]:
    """The 45 supersense names, indexed by lexicographer file number.

    Read from ``root/lexnames`` (lines ``NN<TAB>name<TAB>category``) when the dictionary has one,
    else the built-in :data:`SUPERSENSES` (identical for WordNet 3.0).

    Raises:
        CorruptFileError: ``lexnames`` exists but is malformed.
    """
    path = Path(root if root is not None else wordnet_root()) / "lexnames"
    if not path.is_file():
        return SUPERSENSES
    names: dict[int, str] = {}
    try:
        with open_text(path) as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                fields = line.split()
                if len(fields) < 2 or not fields[0].isdigit():
                    raise CorruptFileError(f"{path}:{lineno}: expected 'NN name', got {line!r}")
                names[int(fields[0])] = fields[1]
    except (OSError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"cannot read {path}: {e}") from e
    if sorted(names) != list(range(len(names))):
        raise CorruptFileError(f"{path}: lexicographer file numbers are not 0..{len(names) - 1}")
    return tuple(names[i] for i in range(len(names)))


def _parse_data_file(
    path: Path, part: str, num_labels: int
) -> tuple[list[str], list[int], list[str]]:
    glosses: list[str] = []
    labels: list[int] = []
    ids: list[str] = []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.startswith("  "):  # the licence header
                continue
            head, sep, gloss = line.partition(" | ")
            fields = head.split(" ", 3)
            if len(fields) < 4 or not fields[0].isdigit() or not fields[1].isdigit():
                raise CorruptFileError(f"{path}:{lineno}: not a WordNet synset line: {line[:80]!r}")
            lexfile = int(fields[1])
            if lexfile >= num_labels:
                raise CorruptFileError(
                    f"{path}:{lineno}: lexicographer file {lexfile} is not below {num_labels}"
                )
            text = gloss.strip()
            if not sep or not text:
                raise CorruptFileError(f"{path}:{lineno}: synset {fields[0]} has no gloss")
            glosses.append(text)
            labels.append(lexfile)
            ids.append(f"{part}:{fields[0]}")
    return glosses, labels, ids


def load_wordnet_glosses(
    root: str | Path | None = None,
    parts: Sequence[str] = PARTS,
    on_corrupt: OnCorrupt = "skip",
) -> LabelledTexts:
    """Load WordNet glosses with their supersense labels.

    Args:
        root: Folder holding ``data.{noun,verb,adj,adv}`` (or ``.gz``). Default:
            :func:`wordnet_root` (``$SSL_DATA_WORDNET``, Debian's ``wordnet-base``, else the
            bundled sample).
        parts: Which parts of speech to read, from ``("noun", "verb", "adj", "adv")``.
        on_corrupt: ``"skip"`` (log and count an unreadable data file, keep the others) or
            ``"raise"``.

    Returns:
        :class:`LabelledTexts` with one gloss per synset (definition and examples, as in the
        file), ``labels (N,) int64`` = lexicographer file number in [0, 45), ``label_names`` the
        45 supersense names, ``ids`` like ``"noun:00001740"`` (part and byte offset). Full
        WordNet 3.0: 117,659 glosses (82,115 noun, 13,767 verb, 18,156 adj, 3,621 adv).

    Raises:
        ValueError: A part is not one of :data:`PARTS`.
        DatasetNotFoundError: A requested ``data.<part>`` file is not in ``root``.
        CorruptFileError: A data file is malformed or undecodable and ``on_corrupt="raise"``.
    """
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise ValueError(f"parts must be drawn from {PARTS}, got {bad}")
    folder = Path(root) if root is not None else wordnet_root()
    names = supersense_names(folder)
    corrupt = CorruptFiles(on_corrupt)
    texts: list[str] = []
    labels: list[int] = []
    ids: list[str] = []
    for part in parts:
        path = _data_file(folder, part)
        if path is None:
            raise DatasetNotFoundError(
                f"WordNet file data.{part} not found in {folder}; install Debian's wordnet-base, "
                f"set ${ENV_VAR} to a WordNet dict folder, or leave root unset for the bundled sample"
            )
        try:
            g, y, i = _parse_data_file(path, part, len(names))
        except (OSError, EOFError, UnicodeDecodeError, CorruptFileError) as e:
            corrupt.handle(path, e)
            continue
        texts += g
        labels += y
        ids += i
    return LabelledTexts(
        texts=texts,
        labels=np.asarray(labels, dtype=np.int64),
        label_names=names,
        ids=ids,
        skipped=list(corrupt.skipped),
    )
