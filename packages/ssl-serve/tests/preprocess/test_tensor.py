"""Tensor inputs: byte layout, dtype and shape checks."""

from __future__ import annotations

import numpy as np
import pytest
from serve_helpers import reference_preprocess

from ssl_serve.errors import InvalidInputError
from ssl_serve.preprocess import decode_tensor


def test_little_endian_bytes_round_trip(fashion_images: np.ndarray) -> None:
    x = reference_preprocess(fashion_images[:1])[0]
    out = decode_tensor("float32", x.shape, x.astype("<f4").tobytes(), expected_shape=(1, 28, 28))
    np.testing.assert_array_equal(out, x)
    assert out.dtype == np.float32 and out.flags.writeable


@pytest.mark.parametrize(
    ("dtype", "shape", "nbytes", "message"),
    [
        ("float64", (1, 28, 28), 28 * 28 * 8, "dtype is 'float64'"),
        ("float32", (28, 28), 28 * 28 * 4, r"shape is \[28, 28\]"),
        ("float32", (1, 28, 28), 100, "100 bytes"),
    ],
)
def test_bad_tensors_are_invalid_input(
    dtype: str, shape: tuple[int, ...], nbytes: int, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        decode_tensor(dtype, shape, b"\0" * nbytes, expected_shape=(1, 28, 28), index=4)
    assert str(info.value).startswith("input 4: ")


def test_non_finite_values_are_refused() -> None:
    x = np.full((1, 2, 2), np.nan, dtype="<f4")
    with pytest.raises(InvalidInputError, match="NaN"):
        decode_tensor("float32", x.shape, x.tobytes(), expected_shape=(1, 2, 2))
