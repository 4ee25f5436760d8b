"""The corrupt-file policy shared by every file-backed dataset: skip and count, or raise."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, get_args

from ssl_data.errors import CorruptFileError

OnCorrupt = Literal["skip", "raise"]
logger = logging.getLogger("ssl_data")


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
