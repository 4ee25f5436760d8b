import numpy as np
import pytest
import torch

from ssl_models import SimSiamLoss


@pytest.fixture(autouse=True)
def _one_thread():
    # Small ops run many times slower with 2 threads when another process holds a core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _d(p, z):
    """arXiv:2011.10566, eq. 1: negative mean cosine similarity, by loops."""
    p, z = np.asarray(p, np.float64), np.asarray(z, np.float64)
    cos = [
        float(p[i] @ z[i]) / (np.linalg.norm(p[i]) * np.linalg.norm(z[i])) for i in range(len(p))
    ]
    return -sum(cos) / len(cos)


def _inputs(seed, b=6, d=5):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, d, generator=g) for _ in range(4)]


def test_matches_reference():
    p_a, p_b, z_a, z_b = _inputs(0)
    expected = 0.5 * _d(p_a, z_b) + 0.5 * _d(p_b, z_a)
    assert SimSiamLoss()(p_a, p_b, z_a, z_b).item() == pytest.approx(expected, abs=1e-5)


def test_stop_gradient_on_projections():
    # z gets no gradient from the loss; p's gradient equals that of -cos(p, const).
    p_a, p_b, z_a, z_b = (x.requires_grad_(True) for x in _inputs(1))
    SimSiamLoss()(p_a, p_b, z_a, z_b).backward()
    assert z_a.grad is None and z_b.grad is None
    p2 = p_a.detach().clone().requires_grad_(True)
    (-0.5 * torch.nn.functional.cosine_similarity(p2, z_b.detach(), dim=1).mean()).backward()
    torch.testing.assert_close(p_a.grad, p2.grad, atol=1e-7, rtol=0)


def test_range():
    z = torch.randn(4, 3)
    assert SimSiamLoss()(z, z, z, z).item() == pytest.approx(-1.0, abs=1e-6)
    assert SimSiamLoss()(-z, -z, z, z).item() == pytest.approx(1.0, abs=1e-6)
