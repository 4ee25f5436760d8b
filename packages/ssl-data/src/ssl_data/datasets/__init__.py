"""Datasets: real image sets and their file formats."""

from ssl_data.datasets.fashion_mnist import (
    CLASSES as FASHION_MNIST_CLASSES,
)
from ssl_data.datasets.fashion_mnist import (
    bundled_sample_root,
    fashion_mnist_root,
    load_fashion_mnist,
)
from ssl_data.datasets.idx import read_idx

__all__ = [
    "FASHION_MNIST_CLASSES",
    "bundled_sample_root",
    "fashion_mnist_root",
    "load_fashion_mnist",
    "read_idx",
]
