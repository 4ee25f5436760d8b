import gzip
import struct

import numpy as np
import pytest

from ssl_data import CorruptFileError, read_idx


def _write_idx(path, array, code=0x08):
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(array.dtype.newbyteorder(">")).tobytes())


def test_reads_values_and_shape(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), a)


def test_big_endian_int32(tmp_path):
    a = np.array([1, -2, 70000], dtype=np.int32)
    _write_idx(tmp_path / "b.gz", a, code=0x0C)
    np.testing.assert_array_equal(read_idx(tmp_path / "b.gz"), a)


def test_bad_magic_names_file(tmp_path):
    p = tmp_path / "bad.gz"
    with gzip.open(p, "wb") as f:
        f.write(b"PK\x03\x04junk")
    with pytest.raises(CorruptFileError, match="bad.gz.*not an IDX"):
        read_idx(p)


def test_truncated_payload(tmp_path):
    p = tmp_path / "short.gz"
    with gzip.open(p, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 7)
    with pytest.raises(CorruptFileError, match="7 bytes.*needs 10"):
        read_idx(p)


def test_not_gzip_is_corrupt(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(b"plain bytes")
    with pytest.raises(CorruptFileError):
        read_idx(p)
