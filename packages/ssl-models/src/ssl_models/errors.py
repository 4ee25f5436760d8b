"""Exceptions raised by ssl-models."""

from __future__ import annotations


class SslModelsError(Exception):
    """Base class of every error ssl-models raises on purpose."""


class UnknownNameError(SslModelsError, KeyError):
    """A registry was asked for a name it does not hold; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])
