"""Typed access to decoded JSON whose errors name the file and the dotted key."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from ssl_serve.errors import BundleError


class JsonFields:
    """Reads fields of a decoded JSON document; every error is a BundleError naming the file.

    Args:
        source: The file the document came from, named in every error.
    """

    def __init__(self, source: str | Path) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> NoReturn:
        """Raise BundleError: "<source>: key '<key>' <message>"."""
        raise BundleError(self.source, f"key {key!r} {message}")

    def mapping(
        self, value: Any, key: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> Mapping[str, Any]:
        """``value`` as an object holding every ``required`` key and no unknown one."""
        where = f"key {key!r}" if key else "the top level"
        if not isinstance(value, Mapping):
            raise BundleError(self.source, f"{where} must be an object, got {value!r}")
        missing = [k for k in required if k not in value]
        unknown = sorted(set(value) - set(required) - set(optional))
        if missing:
            raise BundleError(self.source, f"{where} lacks required keys {missing}")
        if unknown:
            known = sorted(required + optional)
            raise BundleError(self.source, f"{where} has unknown keys {unknown}; known: {known}")
        return value

    def typed(
        self, obj: Mapping[str, Any], key: str, kind: type, default: Any = None, prefix: str = ""
    ) -> Any:
        """``obj[key]`` checked to be a ``kind`` (ints pass as floats; bools never as numbers).

        ``prefix`` is the dotted path of ``obj`` in the document (e.g. "preprocessing."), so
        errors name the full key; a missing key returns ``default``.
        """
        if key not in obj:
            return default
        value = obj[key]
        # bool is an int in Python; a JSON true must not pass for a count.
        if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                return float(value)
            self.fail(prefix + key, f"must be {kind.__name__}, got {value!r}")
        return value

    def numbers(
        self, obj: Mapping[str, Any], key: str, kind: type, prefix: str = ""
    ) -> tuple[Any, ...]:
        """``obj[key]`` as a non-empty list of ``kind`` values, returned as a tuple."""
        value = obj[key]
        if not isinstance(value, list) or not value:
            self.fail(prefix + key, f"must be a non-empty list, got {value!r}")
        return tuple(self.typed({key: v}, key, kind, prefix=prefix) for v in value)
