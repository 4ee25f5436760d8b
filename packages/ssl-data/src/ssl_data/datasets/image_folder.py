"""Image folders: one image per file, labelled by sub-folder or unlabelled, decoded with Pillow."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch.utils.data import Dataset

from ssl_data.datasets.corrupt import CorruptFiles, OnCorrupt
from ssl_data.datasets.image_decode import (
    IMAGE_EXTENSIONS,
    ImageMode,
    check_mode,
    decode_image,
    probe_image,
)
from ssl_data.errors import CorruptFileError, DatasetNotFoundError

Verify = Literal["header", "full", "none"]
UNLABELLED = -1
logger = logging.getLogger("ssl_data")


def _image_files(folder: Path, recursive: bool, extensions: tuple[str, ...]) -> list[Path]:
    """Image files under ``folder`` sorted by relative path (hidden files and folders skipped)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        found.extend(
            Path(dirpath, f)
            for f in filenames
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in extensions
        )
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


class ImageFolder(Dataset[tuple[torch.Tensor, int]]):
    """Images stored one per file, optionally labelled by the sub-folder they are in.

    Layouts (``root/dog/1.png``, ``root/cat/x/2.jpg`` ...):

    - ``labelled=True``: each immediate sub-folder of ``root`` is a class; class names sorted
      alphabetically get ids 0, 1, ... (:attr:`classes`). Images directly in ``root`` belong to
      no class and are left out (with a warning saying how many).
    - ``labelled=False``: every image under ``root``; label :data:`UNLABELLED` (-1).

    ``recursive`` decides whether sub-folders (of ``root``, or of each class folder) are searched.
    Files are ordered by relative path, so sample indices (which seed each sample's views) are
    the same on every machine.

    Corrupt files never change the dataset's size silently:

    - At construction each file is checked (``verify``): ``"header"`` reads only the image header
      (cheap), ``"full"`` decodes every image, ``"none"`` lists the files. Unreadable files are
      handled by ``on_corrupt``: ``"skip"`` leaves them out of the index, counts them in
      :attr:`corrupt` and logs each path (logger ``ssl_data``, WARNING) plus a summary;
      ``"raise"`` raises at the first one.
    - A file that passed the check but fails to decode at access time (e.g. a truncated body)
      under ``"skip"`` is replaced by a deterministic substitute: the next index (cyclically)
      whose image decodes; the item keeps the requested position, carries the substitute's
      pixels and label, and the failure is counted and logged (once per process; each DataLoader
      worker process keeps its own :attr:`corrupt` record). Under ``"raise"`` it raises.

    Args:
        root: The folder.
        labelled: Label images by their class sub-folder (see above).
        recursive: Search sub-folders.
        mode: Decoded colour mode: "L" (1 channel), "RGB" (3) or "RGBA" (4).
        extensions: Lower-case file suffixes taken as images.
        on_corrupt: ``"skip"`` or ``"raise"`` (see above).
        verify: ``"header"``, ``"full"`` or ``"none"`` (see above).

    Raises:
        ValueError: A bad ``mode``, ``on_corrupt`` or ``verify``.
        DatasetNotFoundError: ``root`` is missing, has no class folders (``labelled=True``) or
            no readable image.
        CorruptFileError: An unreadable file under ``on_corrupt="raise"``.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        labelled: bool = True,
        recursive: bool = True,
        mode: ImageMode = "RGB",
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        on_corrupt: OnCorrupt = "skip",
        verify: Verify = "header",
    ):
        self.mode = check_mode(mode)
        if verify not in get_args(Verify):
            raise ValueError(f"verify must be one of {get_args(Verify)}, got {verify!r}")
        self.corrupt = CorruptFiles(on_corrupt)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"image folder {self.root} does not exist")
        exts = tuple(e.lower() for e in extensions)
        candidates: list[tuple[Path, int]] = []
        if labelled:
            class_dirs = sorted(
                d for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")
            )
            if not class_dirs:
                raise DatasetNotFoundError(
                    f"{self.root} has no class sub-folders; use labelled=False for a folder of "
                    "unlabelled images"
                )
            self.classes: tuple[str, ...] = tuple(d.name for d in class_dirs)
            for label, d in enumerate(class_dirs):
                candidates.extend((p, label) for p in _image_files(d, recursive, exts))
            loose = _image_files(self.root, False, exts)
            if loose:
                logger.warning(
                    "%d images directly in %s belong to no class folder and are left out",
                    len(loose), self.root,
                )  # fmt: skip
        else:
            self.classes = ()
            candidates = [(p, UNLABELLED) for p in _image_files(self.root, recursive, exts)]
        paths, labels, sizes = [], [], []
        for path, label in candidates:
            try:
                if verify == "full":
                    size = tuple(decode_image(path, self.mode).shape[1:])
                elif verify == "header":
                    size = probe_image(path)
                else:
                    size = (0, 0)
            except CorruptFileError as e:
                self.corrupt.handle(path, e)
                continue
            paths.append(path)
            labels.append(label)
            sizes.append(size)
        if self.corrupt.count:
            logger.warning(
                "ImageFolder %s: %d of %d files unreadable and skipped; %d images indexed",
                self.root, self.corrupt.count, len(candidates), len(paths),
            )  # fmt: skip
        if not paths:
            raise DatasetNotFoundError(
                f"no readable image with a suffix in {exts} under {self.root}"
                f"{' (recursive)' if recursive else ''}"
            )
        self.paths: list[Path] = paths
        self.labels = np.asarray(labels, dtype=np.int64)
        self.sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name to label id (empty when unlabelled)."""
        return {c: i for i, c in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """Image ``i`` and its label.

        Returns:
            ``(image, label)``: ``(C, H, W) uint8`` in [0, 255] (C from ``mode``; H, W the file's
            own size in pixels) and the class id (-1 when unlabelled). For an image that fails
            to decode under ``"skip"``: the substitute described in the class docstring.

        Raises:
            IndexError: ``i`` out of range.
            CorruptFileError: The image cannot be decoded under ``"raise"``, or no image decodes.
        """
        j, image = self.corrupt.first_readable(
            i, self.paths, lambda path: decode_image(path, self.mode), (CorruptFileError,), "image"
        )
        return image, int(self.labels[j])
