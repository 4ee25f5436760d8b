"""The exceptions of ssl-serve and, in one table, the gRPC status code each one maps to.

Every error the package raises on purpose derives from :class:`SslServeError`. The server turns
them into gRPC statuses with :func:`grpc_status_code` (the only place that mapping lives); the
client turns a failed call back into a :class:`RemoteError` that carries the status code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc


class SslServeError(Exception):
    """Base class of every error ssl-serve raises on purpose."""


class InvalidInputError(SslServeError, ValueError):
    """An input of a request (or a value given to a function) is malformed.

    Args:
        message: What was wrong and what would be right.
        index: Position of the offending input in the request (0-based), when one input is at
            fault; it is prefixed to the message as ``input <index>: ``.
    """

    def __init__(self, message: str, *, index: int | None = None) -> None:
        self.index = index
        super().__init__(message if index is None else f"input {index}: {message}")


class UnsupportedModalityError(InvalidInputError):
    """An input's modality (text, image, audio) is not the one the model embeds."""


class NotAClassifierError(SslServeError):
    """Classify was asked of a model whose bundle has no class probabilities (no ``labels``)."""


class RequestTooLargeError(SslServeError):
    """A request holds more inputs (or bytes) than the server accepts in one call."""


class QueueFullError(SslServeError):
    """A model's request queue is full (``--max-queue-size``): the server is overloaded.

    The message says how many requests wait and what to do (retry later with backoff, or on
    another replica); the status is RESOURCE_EXHAUSTED.
    """


class RequestDroppedError(SslServeError):
    """A queued request was dropped before it ran because its client cancelled it.

    The client is gone, so nobody reads the status (CANCELLED); it is counted in the metrics.
    """


class RequestDeadlineError(RequestDroppedError):
    """A queued request was dropped before it ran because its deadline had passed.

    Status DEADLINE_EXCEEDED (the client has usually seen it already from its own deadline).
    """


class UnauthenticatedError(SslServeError):
    """A call carried no bearer token, or a wrong one, to a server started with ``--token``."""


class ModelNotFoundError(SslServeError, LookupError):
    """No model (or no such version of it) in the repository.

    Args:
        name: Requested model name.
        version: Requested version ("" means the highest one).
        available: Names (or versions of ``name``) that do exist, listed in the message.
    """

    def __init__(self, name: str, version: str = "", available: list[str] | None = None) -> None:
        self.name = name
        self.version = version
        what = f"model {name!r}" + (f" version {version!r}" if version else "")
        hint = f"; available: {', '.join(available)}" if available else ""
        super().__init__(f"{what} not found{hint}")


class ModelNotReadyError(SslServeError):
    """The model exists but is still loading, or the server is draining."""


class BundleError(SslServeError):
    """A bundle folder or its bundle.json is missing, unreadable or invalid.

    Args:
        path: The offending file or folder.
        message: What was wrong (name the bad key and value) and what would be right.
    """

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: {message}")


class ExecutionProviderError(SslServeError):
    """The onnxruntime execution provider asked for (``--device``) is not installed or not used.

    onnxruntime falls back to the CPU without a word when, say, the CUDA libraries are missing;
    the server refuses to start instead, and the message names the install that fixes it.
    """


class CheckpointError(SslServeError):
    """A training checkpoint folder cannot be read for export (see docs/contracts.md)."""


class ExportValidationError(SslServeError):
    """The exported ONNX model disagrees with PyTorch (or server preprocessing with training).

    Args:
        message: Which check failed, with the measured figure and the tolerance.
        figures: The measured validation figures (e.g. ``max_abs_diff``, ``min_cosine``).
    """

    def __init__(self, message: str, figures: dict[str, Any] | None = None) -> None:
        self.figures = dict(figures or {})
        super().__init__(message)


class RemoteError(SslServeError):
    """A call to an ssl-serve server failed (raised by :class:`ssl_serve.client.EmbeddingClient`).

    Args:
        code: The gRPC status code the server (or the channel) returned.
        details: The status message, e.g. "input 3: cannot decode image ...".
    """

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "message larger than max" in details:
            details += f" ({MESSAGE_SIZE_HINT})"
        self.code = code
        self.details = details
        super().__init__(f"{code.name}: {details}")


#: Appended to a RESOURCE_EXHAUSTED "message larger than max" status (gRPC's own wording).
MESSAGE_SIZE_HINT = (
    "over a gRPC message size limit: raise the client's max_message_bytes "
    "(EmbeddingClient(max_message_bytes=...), ssl-serve embed --max-message-mb) and the "
    "server's --max-message-mb, or send fewer inputs per request"
)


# The one place where errors meet status codes; the most specific class in an error's MRO wins.
_STATUS_CODES: dict[type[SslServeError], grpc.StatusCode] = {
    InvalidInputError: grpc.StatusCode.INVALID_ARGUMENT,
    UnsupportedModalityError: grpc.StatusCode.INVALID_ARGUMENT,
    NotAClassifierError: grpc.StatusCode.FAILED_PRECONDITION,
    RequestTooLargeError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    QueueFullError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    RequestDroppedError: grpc.StatusCode.CANCELLED,
    RequestDeadlineError: grpc.StatusCode.DEADLINE_EXCEEDED,
    UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    ModelNotFoundError: grpc.StatusCode.NOT_FOUND,
    ModelNotReadyError: grpc.StatusCode.UNAVAILABLE,
    BundleError: grpc.StatusCode.INTERNAL,
    ExecutionProviderError: grpc.StatusCode.FAILED_PRECONDITION,
    CheckpointError: grpc.StatusCode.INTERNAL,
    ExportValidationError: grpc.StatusCode.INTERNAL,
    SslServeError: grpc.StatusCode.INTERNAL,
}


def grpc_status_code(error: BaseException) -> grpc.StatusCode:
    """The gRPC status code a server reports for ``error``.

    Args:
        error: Any exception; only :class:`SslServeError` subclasses map to specific codes.

    Returns:
        The code for the most specific mapped class of ``error`` (a :class:`RemoteError` keeps
        its own code), ``INTERNAL`` for anything else.
    """
    if isinstance(error, RemoteError):
        return error.code
    for cls in type(error).__mro__:
        if cls in _STATUS_CODES:
            return _STATUS_CODES[cls]
    return grpc.StatusCode.INTERNAL


__all__ = [
    "BundleError",
    "CheckpointError",
    "ExportValidationError",
    "InvalidInputError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "NotAClassifierError",
    "QueueFullError",
    "RemoteError",
    "RequestDeadlineError",
    "RequestDroppedError",
    "RequestTooLargeError",
    "SslServeError",
    "UnauthenticatedError",
    "UnsupportedModalityError",
    "grpc_status_code",
]
