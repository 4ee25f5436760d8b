"""The corrupt-file policy shared by every file-backed dataset: skip and count, or raise."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, TypeVar, get_args

from ssl_data.errors import CorruptFileError

OnCorrupt = Literal["skip", "raise"]
logger = logging.getLogger("ssl_data")
T = TypeVar("T")


class CorruptFiles:
    """Applies the ``on_corrupt`` policy and keeps the record of skipped files.

    With ``"skip"`` each unreadable file is logged (logger ``ssl_data``, level WARNING, with its
    path and the reason) and counted, so a dataset that loses files says so; with ``"raise"`` the
    first one raises :class:`~ssl_data.errors.CorruptFileError` naming the file.

    Args:
        policy: ``"skip"`` or ``"raise"``.

    Raises:
        ValueError: ``policy`` is not one of those.
    """

    def __init__(self, policy: OnCorrupt = "skip"):
        if policy not in get_args(OnCorrupt):
            raise ValueError(f"on_corrupt must be one of {get_args(OnCorrupt)}, got {policy!r}")
        self.policy = policy
        self.skipped: list[tuple[str, str]] = []
        self._failed: set[int] = set()  # indices that failed at access time (this process)

    @property
    def count(self) -> int:
        """Number of files skipped so far."""
        return len(self.skipped)

    def handle(self, path: str | Path, error: BaseException) -> None:
        """Record that ``path`` could not be read because of ``error``.

        Raises:
            CorruptFileError: the policy is ``"raise"`` (chained to ``error``).
        """
        reason = f"{type(error).__name__}: {error}"
        if self.policy == "raise":
            raise CorruptFileError(f"cannot read {path}: {reason}") from error
        self.skipped.append((str(path), reason))
        logger.warning(
            "skipping unreadable file %s (%s); %d skipped so far", path, reason, self.count
        )

    def first_readable(
        self,
        i: int,
        paths: Sequence[Path],
        decode: Callable[[Path], T],
        errors: tuple[type[BaseException], ...],
        what: str,
    ) -> tuple[int, T]:
        """Item ``i`` of a map-style dataset, or its deterministic stand-in under ``"skip"``.

        A file that passed the index-time check but fails to decode now is handled by the
        policy (logged and counted, or raised), remembered, and replaced by the next readable
        file (wrapping around), so the dataset keeps its size and every epoch sees the same
        substitute.

        Args:
            i: Index, ``-len(paths) <= i < len(paths)``.
            paths: The dataset's files.
            decode: Reads one file; raises one of ``errors`` when it cannot.
            errors: The exceptions that mean "unreadable".
            what: Singular noun for messages ("image", "clip").

        Returns:
            The index actually read and its decoded value.

        Raises:
            IndexError: ``i`` out of range.
            CorruptFileError: The file is unreadable under ``"raise"``, or no file decodes.
        """
        n = len(paths)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} {what}s")
        for j in (k % n for k in range(i % n, i % n + n)):
            if j in self._failed:
                continue
            try:
                return j, decode(paths[j])
            except errors as e:
                self.handle(paths[j], e)  # raises under "raise"
                self._failed.add(j)
                logger.warning("substituting %s %d with the next readable one", what, j)
        raise CorruptFileError(f"none of the {n} {what} files can be decoded")
