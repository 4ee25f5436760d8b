import numpy as np
import pytest
import torch

from ssl_data import load_fashion_mnist
from ssl_data.datasets import bundled_sample_root


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Small ops run many times slower with 2 threads on a shared 2-core machine (ENVIRONMENT.md);
    use one thread inside these modules and restore the caller's setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fashion():
    """The first 96 real Fashion-MNIST training images, ``(96, 28, 28) uint8``."""
    x, _ = load_fashion_mnist("train", root=bundled_sample_root())
    return np.ascontiguousarray(x[:96])


@pytest.fixture(scope="session")
def gray(fashion):
    """``(32, 1, 28, 28) uint8`` real gray images."""
    return torch.from_numpy(fashion[:32].copy()).unsqueeze(1)


@pytest.fixture(scope="session")
def rgb(fashion):
    """``(32, 3, 28, 28) uint8``: three different real images stacked as R, G and B."""
    return torch.from_numpy(np.stack([fashion[:32], fashion[32:64], fashion[64:96]], axis=1))


@pytest.fixture(scope="session")
def rgba(fashion, rgb):
    """``(32, 4, 28, 28) uint8``: :func:`rgb` plus a real image (reversed order) as alpha."""
    alpha = torch.from_numpy(fashion[95:63:-1].copy()).unsqueeze(1)
    return torch.cat([rgb, alpha], dim=1)
