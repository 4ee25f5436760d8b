import math

import numpy as np
import pytest
import torch

from ssl_models import MoCoV3Loss


@pytest.fixture(autouse=True)
def _one_thread():
    # Small ops run many times slower with 2 threads when another process holds a core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _ctr(q, k, t):
    """arXiv:2104.02057, Algorithm 1: CE of q_i against all keys, positive k_i, times 2t."""
    q, k = _unit(q), _unit(k)
    total = 0.0
    for i in range(len(q)):
        logits = [float(q[i] @ k[j]) / t for j in range(len(k))]
        total += -(logits[i] - math.log(sum(math.exp(s) for s in logits)))
    return 2 * t * total / len(q)


def _inputs(seed, b=5, d=4):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, d, generator=g) for _ in range(4)]


@pytest.mark.parametrize("t", [0.2, 1.0])
def test_matches_loop_reference(t):
    q_a, q_b, k_a, k_b = _inputs(0)
    expected = _ctr(q_a, k_b, t) + _ctr(q_b, k_a, t)
    assert MoCoV3Loss(t)(q_a, q_b, k_a, k_b).item() == pytest.approx(expected, abs=1e-5)


def test_keys_get_no_gradient_and_queries_do():
    q_a, q_b, k_a, k_b = (x.requires_grad_(True) for x in _inputs(1))
    MoCoV3Loss()(q_a, q_b, k_a, k_b).backward()
    assert k_a.grad is None and k_b.grad is None
    assert q_a.grad.abs().sum() > 0 and q_b.grad.abs().sum() > 0


def test_errors():
    with pytest.raises(ValueError, match="temperature"):
        MoCoV3Loss(-1.0)
    a = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="one \\(B, D\\) shape"):
        MoCoV3Loss()(a, a, a, torch.zeros(3, 5))
