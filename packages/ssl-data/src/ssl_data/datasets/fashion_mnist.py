"""Fashion-MNIST (Xiao et al., 2017, arXiv:1708.07747): 70k 28x28 grayscale clothing images.

The full set comes from Debian's ``dataset-fashion-mnist`` package. ssl-data also ships a real
sample of it (the first 2,000 training and 1,000 test images, MIT licence) for machines without
that package.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from ssl_data.datasets.idx import read_idx
from ssl_data.errors import CorruptFileError, DatasetNotFoundError

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_PREFIX = {"train": "train", "test": "t10k"}


def bundled_sample_root() -> Path:
    """Folder of the real Fashion-MNIST sample shipped inside ssl-data."""
    return Path(str(resources.files("ssl_data") / "samples" / "fashion_mnist"))


def fashion_mnist_root() -> Path:
    """Where the full set is read from: ``$SSL_DATA_FASHION_MNIST``, else the Debian folder.

    Falls back to the bundled sample when neither holds the files.
    """
    env = os.environ.get("SSL_DATA_FASHION_MNIST")
    for root in ([Path(env)] if env else []) + [DEBIAN_ROOT]:
        if (root / "train-images-idx3-ubyte.gz").is_file():
            return root
    return bundled_sample_root()


def load_fashion_mnist(
    split: Literal["train", "test"], root: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of Fashion-MNIST.

    Args:
        split: ``"train"`` (60,000 images; 2,000 in the bundled sample) or ``"test"`` (10,000;
            1,000 in the sample).
        root: Folder holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``. Default:
            :func:`fashion_mnist_root`.

    Returns:
        ``images (N, 28, 28) uint8`` in [0, 255] and ``labels (N,) int64`` in [0, 9]
        (names in :data:`CLASSES`).

    Raises:
        ValueError: ``split`` is not "train" or "test".
        DatasetNotFoundError: The files are not in ``root``.
        CorruptFileError: A file cannot be decoded, or images and labels disagree in number.
    """
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(root) if root is not None else fashion_mnist_root()
    images_path = folder / f"{_PREFIX[split]}-images-idx3-ubyte.gz"
    labels_path = folder / f"{_PREFIX[split]}-labels-idx1-ubyte.gz"
    for p in (images_path, labels_path):
        if not p.is_file():
            raise DatasetNotFoundError(
                f"Fashion-MNIST file {p} not found; point the root (a recipe's data.root) at a "
                "folder holding the four IDX files, or leave it unset (null) to use Debian's "
                "dataset-fashion-mnist, $SSL_DATA_FASHION_MNIST or the bundled sample"
            )
    images = read_idx(images_path)
    labels = read_idx(labels_path).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise CorruptFileError(
            f"{folder}: images {images.shape} and labels {labels.shape} do not match"
        )
    return images, labels
