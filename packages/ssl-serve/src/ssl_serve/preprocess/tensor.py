"""Already-preprocessed tensor inputs: little-endian bytes + dtype + shape to a numpy array."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssl_serve.errors import InvalidInputError


def decode_tensor(
    dtype: str,
    shape: Sequence[int],
    data: bytes,
    *,
    expected_shape: Sequence[int],
    index: int | None = None,
) -> np.ndarray:
    """Decode one tensor input that is fed to the model as it is (no preprocessing).

    Args:
        dtype: numpy dtype name; only "float32" is accepted (the models' input dtype).
        shape: The tensor's dimensions, e.g. ``(1, 28, 28)`` for one (C, H, W) image.
        data: Little-endian, row-major contents: ``prod(shape) * 4`` bytes.
        expected_shape: The model's input shape without the batch axis, e.g. ``(1, 28, 28)``.
        index: Position of the input in its request, named in errors.

    Returns:
        ``expected_shape`` float32 array (native byte order, writable copy).

    Raises:
        InvalidInputError: Wrong dtype or shape, a byte count that does not match the shape, or
            non-finite values.
    """
    if dtype != "float32":
        raise InvalidInputError(
            f"tensor dtype is {dtype!r}; the model takes 'float32'", index=index
        )
    if tuple(shape) != tuple(expected_shape):
        raise InvalidInputError(
            f"tensor shape is {list(shape)}; the model takes {list(expected_shape)} per input",
            index=index,
        )
    expected_bytes = int(np.prod(expected_shape)) * 4
    if len(data) != expected_bytes:
        raise InvalidInputError(
            f"tensor data is {len(data)} bytes; shape {list(shape)} float32 needs {expected_bytes}",
            index=index,
        )
    array = np.frombuffer(data, dtype="<f4").reshape(tuple(expected_shape)).astype(np.float32)
    if not np.isfinite(array).all():
        raise InvalidInputError("tensor holds NaN or infinite values", index=index)
    return array
