import numpy as np
import pytest
import torch

from ssl_models import VICRegLoss


@pytest.fixture(autouse=True)
def _one_thread():
    # Small ops run many times slower with 2 threads when another process holds a core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _reference(z_a, z_b, lam=25.0, mu=25.0, nu=1.0, eps=1e-4):
    """arXiv:2105.04906 (scaling of the released code), by loops over samples and dimensions."""
    a, b = np.asarray(z_a, np.float64), np.asarray(z_b, np.float64)
    n, d = a.shape
    invariance = sum((a[i, j] - b[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)

    def var_cov(x):
        mean = [sum(x[:, j]) / n for j in range(d)]
        cov = [
            [
                sum((x[k, i] - mean[i]) * (x[k, j] - mean[j]) for k in range(n)) / (n - 1)
                for j in range(d)
            ]
            for i in range(d)
        ]
        v = sum(max(0.0, 1 - np.sqrt(cov[j][j] + eps)) for j in range(d)) / d
        c = sum(cov[i][j] ** 2 for i in range(d) for j in range(d) if i != j) / d
        return v, c

    va, ca = var_cov(a)
    vb, cb = var_cov(b)
    return lam * invariance + mu * (va + vb) / 2 + nu * (ca + cb)


@pytest.mark.parametrize("scale", [0.3, 3.0])  # below and above the variance hinge at std 1
def test_matches_loop_reference(scale):
    g = torch.Generator().manual_seed(0)
    z_a = scale * torch.randn(6, 4, generator=g)
    z_b = z_a + 0.5 * torch.randn(6, 4, generator=g)
    assert VICRegLoss()(z_a, z_b).item() == pytest.approx(_reference(z_a, z_b), rel=1e-6, abs=1e-5)


def test_weights_are_applied():
    g = torch.Generator().manual_seed(1)
    z_a, z_b = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    got = VICRegLoss(1.0, 2.0, 3.0)(z_a, z_b).item()
    assert got == pytest.approx(_reference(z_a, z_b, 1.0, 2.0, 3.0), abs=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="weights must be >= 0"):
        VICRegLoss(nu_param=-1)
    with pytest.raises(ValueError, match="at least 2 samples"):
        VICRegLoss()(torch.zeros(1, 3), torch.zeros(1, 3))
