import numpy as np
import pytest
import torch

from ssl_models import BYOLLoss


@pytest.fixture(autouse=True)
def _one_thread():
    # Small ops run many times slower with 2 threads when another process holds a core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _reference(p, z):
    """arXiv:2006.07733, eq. 2: mean squared distance of the L2-normalised vectors."""
    p, z = np.asarray(p, np.float64), np.asarray(z, np.float64)
    total = 0.0
    for i in range(len(p)):
        d = p[i] / np.linalg.norm(p[i]) - z[i] / np.linalg.norm(z[i])
        total += float(d @ d)
    return total / len(p)


def _inputs(seed, b=6, d=5):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, d, generator=g) for _ in range(4)]


def test_matches_reference_symmetrised():
    p_a, p_b, z_a, z_b = _inputs(0)
    expected = _reference(p_a, z_b) + _reference(p_b, z_a)
    assert BYOLLoss()(p_a, p_b, z_a, z_b).item() == pytest.approx(expected, abs=1e-5)


def test_extremes_and_stop_gradient():
    z = torch.randn(4, 3)
    assert BYOLLoss()(2 * z, 3 * z, z, z).item() == pytest.approx(0.0, abs=1e-6)
    assert BYOLLoss()(-z, -z, z, z).item() == pytest.approx(8.0, abs=1e-5)
    p_a, p_b, z_a, z_b = (x.requires_grad_(True) for x in _inputs(1))
    BYOLLoss()(p_a, p_b, z_a, z_b).backward()
    assert z_a.grad is None and z_b.grad is None and p_a.grad.abs().sum() > 0


def test_shape_error():
    with pytest.raises(ValueError, match="one \\(B, D\\) shape"):
        BYOLLoss()(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, 3))
