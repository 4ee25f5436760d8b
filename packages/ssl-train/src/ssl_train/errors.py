"""Exceptions raised by ssl-train."""

from __future__ import annotations


class SslTrainError(Exception):
    """Base class of every error ssl-train raises on purpose."""


class RecipeError(SslTrainError, ValueError):
    """A recipe is invalid; the message names the key, the bad value and what is allowed."""


class CheckpointError(SslTrainError, ValueError):
    """A checkpoint is missing, corrupt or does not fit the recipe; the message names the file."""
