"""The Asterisk core sound prompts: human recordings (8 kHz) labelled by their file names.

Debian's ``asterisk-core-sounds-en-wav`` and ``-fr-wav`` install them under
``/usr/share/asterisk/sounds/<speaker>/``: Allison Smith in US English (``en_US_f_Allison``) and
June Wallack in Canadian French (``fr_CA_f_June``), CC-BY-SA-3.0. The same prompt has the same
file name for both speakers, so a subset such as the ten digits is a small two-speaker
classification set. ssl-data ships the digits and letters of both speakers (72 clips, lossless
FLAC) for machines without the packages.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from ssl_data.datasets.audio_folder import AudioFiles, Verify, list_audio_files
from ssl_data.datasets.corrupt import OnCorrupt
from ssl_data.errors import DatasetNotFoundError

DEBIAN_ROOT = Path("/usr/share/asterisk/sounds")
SPEAKERS = ("en_US_f_Allison", "fr_CA_f_June")
Subset = Literal["digits", "letters", "phonetic", "all"]
DIGITS = tuple(str(d) for d in range(10))
LETTERS = tuple(chr(c) for c in range(ord("a"), ord("z") + 1))
# subset -> (folder, class names, file stem of each class)
_SUBSETS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "digits": ("digits", DIGITS, DIGITS),
    "letters": ("letters", LETTERS, LETTERS),
    "phonetic": ("phonetic", LETTERS, tuple(f"{c}_p" for c in LETTERS)),
}
_EXTENSIONS = (".wav", ".flac")


def bundled_sample_root() -> Path:
    """Folder of the real Asterisk sample shipped inside ssl-data (digits and letters)."""
    return Path(str(resources.files("ssl_data") / "samples" / "asterisk"))


def asterisk_root() -> Path:
    """Where the recordings are read from: ``$SSL_DATA_ASTERISK``, else the Debian folder.

    Falls back to the bundled sample when neither holds a speaker folder.
    """
    env = os.environ.get("SSL_DATA_ASTERISK")
    for root in ([Path(env)] if env else []) + [DEBIAN_ROOT]:
        if any((root / s / "digits").is_dir() for s in SPEAKERS):
            return root
    return bundled_sample_root()


def _find(folder: Path, stem: str) -> Path:
    for ext in _EXTENSIONS:
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    return folder / f"{stem}.wav"  # missing: reported through the corrupt-file policy


class AsteriskSounds(AudioFiles):
    """Asterisk prompts of one or both speakers, labelled from folder and file names.

    Subsets: ``"digits"`` (``digits/0`` to ``digits/9``: 10 classes ``"0"``-``"9"``, 20 clips
    for two speakers), ``"letters"`` (``letters/a`` to ``z``: 26 classes, 52 clips),
    ``"phonetic"`` (``phonetic/a_p`` to ``z_p``, "alpha" to "zulu": 26 classes named by their
    letter, 52 clips; Debian packages only) and ``"all"`` (every recording of the speakers,
    labelled by its path without extension, e.g. ``"digits/7"`` or ``"hello-world"``; Debian:
    1,129 clips, 570 classes). Items are ``(clip (T,) float32, class index)``.

    Args:
        subset: ``"digits"``, ``"letters"``, ``"phonetic"`` or ``"all"``.
        speakers: Speaker folders to include (``SPEAKERS`` by default).
        root: Folder holding ``<speaker>/<subset>/<name>.{wav,flac}``; default
            :func:`asterisk_root` (``$SSL_DATA_ASTERISK``, Debian's, else the bundled sample).
        sample_rate: Rate of the returned clips in Hz (the recordings are 8 kHz).
        on_corrupt: ``"skip"`` or ``"raise"`` for an unreadable or missing recording.
        verify: ``"header"``, ``"full"`` or ``"none"`` (see :class:`AudioFiles`).

    Attributes:
        speaker_ids: ``(N,) int64`` index into :attr:`speakers` of each clip.
        speakers: The speaker folder names.

    Raises:
        ValueError: An unknown subset or speaker.
        DatasetNotFoundError: No recording of the subset under ``root``.
        CorruptFileError: A recording cannot be read and ``on_corrupt="raise"``.
    """

    def __init__(
        self,
        subset: Subset = "digits",
        speakers: Sequence[str] = SPEAKERS,
        root: str | Path | None = None,
        *,
        sample_rate: int | None = 8000,
        on_corrupt: OnCorrupt = "skip",
        verify: Verify = "header",
    ):
        if subset not in get_args(Subset):
            raise ValueError(f"subset must be one of {get_args(Subset)}, got {subset!r}")
        unknown = [s for s in speakers if s not in SPEAKERS]
        if unknown or not speakers:
            raise ValueError(f"speakers must be a non-empty subset of {SPEAKERS}, got {speakers}")
        folder = Path(root) if root is not None else asterisk_root()
        present = [s for s in speakers if (folder / s).is_dir()]
        if not present:
            raise DatasetNotFoundError(
                f"no Asterisk speaker folder ({', '.join(speakers)}) in {folder}; install "
                "asterisk-core-sounds-en-wav / -fr-wav, set $SSL_DATA_ASTERISK, or leave root "
                "unset to use the bundled sample"
            )
        paths: list[Path] = []
        names: list[str] = []
        speaker_ids: list[int] = []
        for s in speakers:
            if subset == "all":
                files = list_audio_files(folder / s, _EXTENSIONS) if (folder / s).is_dir() else []
                stems = [f.relative_to(folder / s).with_suffix("").as_posix() for f in files]
            elif (folder / s / _SUBSETS[subset][0]).is_dir():
                sub, classes, file_stems = _SUBSETS[subset]
                files = [_find(folder / s / sub, stem) for stem in file_stems]
                stems = list(classes)
            else:
                files, stems = [], []
            paths += files
            names += stems
            speaker_ids += [SPEAKERS.index(s)] * len(files)
        if not paths:
            raise DatasetNotFoundError(
                f"no {subset!r} recordings of {', '.join(speakers)} under {folder} (the bundled "
                "sample holds only digits and letters)"
            )
        class_names = sorted(set(names)) if subset == "all" else list(_SUBSETS[subset][1])
        index = {c: k for k, c in enumerate(class_names)}
        super().__init__(paths, [index[n] for n in names], sample_rate=sample_rate,
                         classes=class_names, on_corrupt=on_corrupt, verify=verify)  # fmt: skip
        kept = {p: k for k, p in enumerate(paths)}
        all_ids = np.array(speaker_ids, dtype=np.int64)
        self.speaker_ids = all_ids[[kept[p] for p in self.paths]] if self.paths else all_ids[:0]
        self.speakers = SPEAKERS
        self.root = folder
        self.subset = subset
