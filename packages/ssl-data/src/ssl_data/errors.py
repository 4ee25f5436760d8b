"""Exceptions raised by ssl-data."""

from __future__ import annotations


class SslDataError(Exception):
    """Base class of every error ssl-data raises on purpose."""


class DatasetNotFoundError(SslDataError, FileNotFoundError):
    """A dataset's files are missing; the message says where they were looked for."""


class CorruptFileError(SslDataError, ValueError):
    """A data file exists but cannot be decoded; the message names the file and what was wrong."""
