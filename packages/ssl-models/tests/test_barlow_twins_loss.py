import numpy as np
import pytest
import torch

from ssl_models import BarlowTwinsLoss


@pytest.fixture(autouse=True)
def _one_thread():
    # Small ops run many times slower with 2 threads when another process holds a core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _reference(z_a, z_b, lam, eps=1e-5):
    """arXiv:2103.03230, eq. 1-2, by loops: batch-normalise each dimension, correlate, sum."""
    a, b = np.asarray(z_a, np.float64), np.asarray(z_b, np.float64)
    n, d = a.shape

    def bn(x):
        out = np.empty_like(x)
        for j in range(d):
            col = x[:, j]
            mean = sum(col) / n
            var = sum((v - mean) ** 2 for v in col) / n
            out[:, j] = (col - mean) / np.sqrt(var + eps)
        return out

    a, b = bn(a), bn(b)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[k, i] * b[k, j] for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lam * c**2
    return loss


@pytest.mark.parametrize("lam", [5e-3, 0.5])
def test_matches_loop_reference(lam):
    g = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(7, 4, generator=g), torch.randn(7, 4, generator=g)
    loss = BarlowTwinsLoss(lambda_param=lam)(z_a, z_b)
    assert loss.item() == pytest.approx(_reference(z_a, z_b, lam), abs=1e-5)


def test_identical_decorrelated_views_give_zero():
    # Orthogonal columns with zero mean and unit variance: C is the identity.
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert BarlowTwinsLoss(eps=1e-12)(z, z).item() == pytest.approx(0.0, abs=1e-6)
    assert BarlowTwinsLoss(eps=1e-12)(z, -z).item() == pytest.approx(8.0, abs=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="lambda_param"):
        BarlowTwinsLoss(-1.0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        BarlowTwinsLoss()(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"must both be \(B, D\)"):
        BarlowTwinsLoss()(torch.zeros(2, 3), torch.zeros(2, 4))
