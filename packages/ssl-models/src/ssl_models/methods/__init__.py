"""Self-supervised methods and the registry that builds them by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from ssl_models.errors import UnknownNameError
from ssl_models.methods.base import SSLMethod
from ssl_models.methods.simclr import SimCLR

METHODS: dict[str, Callable[..., SSLMethod]] = {"simclr": SimCLR}


def build_method(config: Mapping[str, Any], encoder: nn.Module) -> SSLMethod:
    """Build a method around an encoder from ``{"name": ..., **kwargs}``.

    Args:
        config: ``name`` selects the method in :data:`METHODS`; other keys go to its constructor.
        encoder: The backbone (see :func:`ssl_models.build_encoder`).

    Returns:
        The method module.

    Raises:
        UnknownNameError: The name is not registered (the message lists the known names).
        TypeError: A keyword argument is not accepted by the method.
    """
    kwargs = dict(config)
    name = kwargs.pop("name", None)
    if name not in METHODS:
        raise UnknownNameError(f"unknown method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name](encoder, **kwargs)


__all__ = ["METHODS", "SSLMethod", "SimCLR", "build_method"]
