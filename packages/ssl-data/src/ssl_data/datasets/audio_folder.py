"""Audio clips from files: a list of files (:class:`AudioFiles`) or a folder (:class:`AudioFolder`).

Corrupt files follow the same rules as :class:`ssl_data.datasets.image_folder.ImageFolder`, by
the ``on_corrupt`` policy (:class:`ssl_data.datasets.corrupt.CorruptFiles`): files are checked
when the dataset is built (``verify``) and an unreadable one is skipped and counted, with its
path in the log, or raises; a file that passed the check but fails to decode when read is, under
``"skip"``, replaced by the next readable clip (counted and logged), so the size never changes.
Clips are decoded, mixed down to mono and resampled when an item is read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch.utils.data import Dataset

from ssl_data.audio.decode import audio_info, decode_audio
from ssl_data.datasets.corrupt import CorruptFiles, OnCorrupt
from ssl_data.errors import CorruptFileError, DatasetNotFoundError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
Verify = Literal["header", "full", "none"]
UNLABELLED = -1
logger = logging.getLogger("ssl_data")


class AudioFiles(Dataset[tuple[torch.Tensor, int]]):
    """Labelled (or unlabelled) audio files, decoded and resampled on access.

    Args:
        paths: The files, in dataset order (the order seeds each sample's views).
        labels: One class index per file, or ``None`` (every label is :data:`UNLABELLED`, -1).
        sample_rate: Rate in Hz of the returned clips (soxr resampling); ``None`` keeps each
            file's own rate.
        classes: Names of the class indices, if any.
        on_corrupt: ``"skip"`` (log, count in :attr:`corrupt`, leave the file out; at access,
            substitute the next readable clip) or ``"raise"``
            (:class:`~ssl_data.errors.CorruptFileError` on the first bad file).
        verify: ``"header"`` (read each header when building: cheap), ``"full"`` (decode every
            file once when building) or ``"none"`` (only list the files).

    Attributes:
        paths: ``list[Path]`` of the files kept.
        labels: ``(N,) int64`` class index per file (-1: unlabelled).
        classes: ``tuple[str, ...]`` class names.
        native_rates: ``(N,) int64`` each file's own rate in Hz (-1 with ``verify="none"``).
        num_frames: ``(N,) int64`` each file's length in samples at its own rate (-1 with
            ``verify="none"``).
        corrupt: The :class:`CorruptFiles` record of the files left out or substituted (each
            DataLoader worker process keeps its own record of substitutions).

    Raises:
        ValueError: ``labels`` and ``paths`` differ in length, a bad ``sample_rate`` or an
            unknown ``verify``.
        DatasetNotFoundError: No file is readable.
        CorruptFileError: A file cannot be read and ``on_corrupt="raise"``.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: Sequence[int] | np.ndarray | None = None,
        *,
        sample_rate: int | None = 16000,
        classes: Sequence[str] = (),
        on_corrupt: OnCorrupt = "skip",
        verify: Verify = "header",
    ):
        if labels is not None and len(labels) != len(paths):
            raise ValueError(f"{len(labels)} labels for {len(paths)} files")
        if sample_rate is not None and sample_rate < 1:
            raise ValueError(f"sample_rate must be >= 1 Hz or None, got {sample_rate}")
        if verify not in get_args(Verify):
            raise ValueError(f"verify must be one of {get_args(Verify)}, got {verify!r}")
        self.sample_rate = sample_rate
        self.classes = tuple(classes)
        self.corrupt = CorruptFiles(on_corrupt)
        all_labels = (
            np.full(len(paths), UNLABELLED, np.int64) if labels is None else np.asarray(labels)
        )
        kept: list[int] = []
        rates: list[int] = []
        frames: list[int] = []
        for k, p in enumerate(paths):
            try:
                if verify == "none":
                    rate, n = -1, -1
                elif verify == "header":
                    rate, n, _ = audio_info(p)
                else:
                    audio, rate = decode_audio(p)
                    n = audio.shape[-1]
            except (CorruptFileError, OSError) as e:
                self.corrupt.handle(p, e)
                continue
            kept.append(k)
            rates.append(rate)
            frames.append(n)
        if self.corrupt.count:
            logger.warning(
                "%s: %d of %d audio files unreadable and skipped; %d clips indexed",
                type(self).__name__, self.corrupt.count, len(paths), len(kept),
            )  # fmt: skip
        if not kept:
            raise DatasetNotFoundError(
                f"no readable audio file among the {len(paths)} given "
                f"({self.corrupt.count} unreadable)"
            )
        self.paths = [Path(paths[k]) for k in kept]
        self.labels = all_labels[kept].astype(np.int64)
        self.native_rates = np.array(rates, dtype=np.int64)
        self.num_frames = np.array(frames, dtype=np.int64)

    @property
    def durations(self) -> np.ndarray:
        """``(N,) float64`` clip durations in seconds (NaN where not read)."""
        known = self.native_rates > 0
        return np.where(known, self.num_frames / np.where(known, self.native_rates, 1), np.nan)

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name to label id (empty when unlabelled)."""
        return {c: i for i, c in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> tuple[int, torch.Tensor]:
        """Clip ``i``, or under ``"skip"`` the next readable one if it no longer decodes.

        Returns:
            The index actually read and its ``(T,) float32`` mono clip at :attr:`sample_rate`.

        Raises:
            IndexError: ``i`` out of range.
            CorruptFileError: The clip cannot be decoded under ``"raise"``, or no clip decodes.
        """

        def decode(path: Path) -> torch.Tensor:
            return torch.from_numpy(decode_audio(path, sample_rate=self.sample_rate)[0])

        return self.corrupt.first_readable(
            i, self.paths, decode, (CorruptFileError, OSError), "clip"
        )

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """``(clip (T,) float32, label)``; the label is -1 for unlabelled clips.

        Raises:
            IndexError: ``i`` out of range.
            CorruptFileError: The clip cannot be decoded under ``"raise"``, or no clip decodes.
        """
        j, clip = self.load(i)
        return clip, int(self.labels[j])


def list_audio_files(
    root: Path, extensions: Sequence[str] = AUDIO_EXTENSIONS, recursive: bool = True
) -> list[Path]:
    """Files under ``root`` whose suffix is in ``extensions`` (case-insensitive), sorted by
    relative path; hidden files and folders are skipped."""
    ext = {e.lower() for e in extensions}
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        found.extend(
            Path(dirpath, f)
            for f in filenames
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in ext
        )
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


class AudioFolder(AudioFiles):
    """Audio files under a folder, labelled by sub-folder or unlabelled.

    Labelled: each immediate sub-folder of ``root`` is a class (sorted by name, index = position)
    holding its clips at any depth, as torchvision's ``ImageFolder``; files directly in ``root``
    are left out (with a warning). Unlabelled: every audio file under ``root`` at any depth,
    label -1. Files are ordered by relative path; hidden files and folders are skipped.

    Args:
        root: The folder.
        labelled: Label by sub-folder (True) or not (False).
        sample_rate: Rate of the returned clips in Hz (``None``: each file's own).
        extensions: File suffixes taken (case-insensitive).
        on_corrupt: ``"skip"`` or ``"raise"`` (see :class:`AudioFiles`).
        verify: ``"header"``, ``"full"`` or ``"none"`` (see :class:`AudioFiles`).

    Raises:
        DatasetNotFoundError: ``root`` is not a folder or holds no readable audio file.
        CorruptFileError: A file cannot be read and ``on_corrupt="raise"``.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        labelled: bool = True,
        sample_rate: int | None = 16000,
        extensions: Sequence[str] = AUDIO_EXTENSIONS,
        on_corrupt: OnCorrupt = "skip",
        verify: Verify = "header",
    ):
        folder = Path(root)
        if not folder.is_dir():
            raise DatasetNotFoundError(f"audio folder {folder} does not exist")
        paths: list[Path] = []
        labels: list[int] = []
        classes: list[str] = []
        if labelled:
            classes = sorted(
                d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")
            )
            for c, name in enumerate(classes):
                files = list_audio_files(folder / name, extensions)
                paths += files
                labels += [c] * len(files)
            loose = list_audio_files(folder, extensions, recursive=False)
            if loose:
                logger.warning(
                    "%d audio files directly in %s belong to no class folder and are left out",
                    len(loose), folder,
                )  # fmt: skip
        else:
            paths = list_audio_files(folder, extensions)
        if not paths:
            layout = "<root>/<class>/<clip>" if labelled else "<root>/**/<clip>"
            raise DatasetNotFoundError(
                f"no audio file ({', '.join(extensions)}) found in {folder}; expected {layout}"
            )
        super().__init__(paths, labels if labelled else None, sample_rate=sample_rate,
                         classes=classes, on_corrupt=on_corrupt, verify=verify)  # fmt: skip
        self.root = folder
