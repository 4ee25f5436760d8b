import math

import numpy as np
import pytest
import torch

from ssl_models import collapse_std


@pytest.fixture(autouse=True)
def _one_thread():
    # Small ops run many times slower with 2 threads when another process holds a core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_matches_numpy():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 3, generator=g)
    n = z.double().numpy()
    n = n / np.linalg.norm(n, axis=1, keepdims=True)
    assert collapse_std(z).item() == pytest.approx(n.std(axis=0, ddof=1).mean(), abs=1e-6)


def test_random_is_about_one_over_sqrt_d_and_collapsed_is_zero():
    g = torch.Generator().manual_seed(1)
    d = 64
    healthy = collapse_std(torch.randn(4096, d, generator=g)).item()
    assert healthy == pytest.approx(1 / math.sqrt(d), rel=0.05)
    one_vector = torch.randn(1, d, generator=g).repeat(256, 1)
    collapsed = one_vector * (1 + torch.rand(256, 1, generator=g))  # scale does not matter
    assert collapse_std(collapsed).item() < 1e-6
    nearly = one_vector + 1e-3 * torch.randn(256, d, generator=g)
    assert collapse_std(nearly).item() < 0.01 * healthy


def test_no_grad_and_errors():
    z = torch.randn(4, 3, requires_grad=True)
    assert not collapse_std(z).requires_grad
    with pytest.raises(ValueError, match="B >= 2"):
        collapse_std(torch.randn(1, 3))
    with pytest.raises(ValueError, match="B >= 2"):
        collapse_std(torch.randn(3))
