import numpy as np
import pytest

from ssl_data import DatasetNotFoundError, load_fashion_mnist
from ssl_data.datasets import bundled_sample_root
from ssl_data.datasets.fashion_mnist import DEBIAN_ROOT


def test_bundled_sample_is_real_and_balanced():
    x, y = load_fashion_mnist("train", root=bundled_sample_root())
    assert x.shape == (2000, 28, 28) and x.dtype == np.uint8
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    assert np.bincount(y).min() >= 150  # roughly 200 per class
    # Known statistics of Fashion-MNIST (mean 0.286, std 0.353 of [0, 1] pixels).
    assert abs(x.mean() / 255 - 0.286) < 0.01
    xt, yt = load_fashion_mnist("test", root=bundled_sample_root())
    assert xt.shape == (1000, 28, 28) and yt.shape == (1000,)


@pytest.mark.skipif(
    not (DEBIAN_ROOT / "train-images-idx3-ubyte.gz").exists(), reason="Debian package not installed"
)
def test_sample_is_prefix_of_full_set():
    full_x, full_y = load_fashion_mnist("test", root=DEBIAN_ROOT)
    assert full_x.shape == (10000, 28, 28)
    x, y = load_fashion_mnist("test", root=bundled_sample_root())
    np.testing.assert_array_equal(x, full_x[:1000])
    np.testing.assert_array_equal(y, full_y[:1000])


def test_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="data.root"):
        load_fashion_mnist("train", root=tmp_path)


def test_bad_split():
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_fashion_mnist("validation")  # type: ignore[arg-type]
