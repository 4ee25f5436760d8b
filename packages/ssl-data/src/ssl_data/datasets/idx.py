"""Reader for the IDX format of (Fashion-)MNIST (http://yann.lecun.com/exdb/mnist/)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ssl_data.errors import CorruptFileError

# IDX type codes -> numpy dtypes (big-endian on disk).
_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file, gzip-compressed (``.gz``) or not.

    Args:
        path: Path of the file.

    Returns:
        The array with the shape recorded in the file, e.g. ``(N, 28, 28) uint8`` for images and
        ``(N,) uint8`` for labels.

    Raises:
        FileNotFoundError: The file does not exist.
        CorruptFileError: The header is not IDX or the payload is shorter than the header says.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise CorruptFileError(f"{path}: cannot read ({err})") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise CorruptFileError(f"{path}: not an IDX file (magic bytes {data[:4]!r})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise CorruptFileError(
            f"{path}: payload is {len(data) - header} bytes, header shape {shape} needs {expected}"
        )
    return (
        np.frombuffer(data, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )
