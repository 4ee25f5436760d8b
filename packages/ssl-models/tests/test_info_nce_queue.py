import math

import numpy as np
import pytest
import torch

from ssl_models import InfoNCEQueueLoss


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


def _reference(q, k, queue, t):
    """MoCo's InfoNCE (arXiv:1911.05722, eq. 1) by loops: positive logit first, then K negatives."""
    q, k, queue = _unit(q), _unit(k), _unit(queue)
    total = 0.0
    for i in range(len(q)):
        pos = float(q[i] @ k[i]) / t
        negs = [float(q[i] @ queue[j]) / t for j in range(len(queue))]
        total += -(pos - math.log(math.exp(pos) + sum(math.exp(s) for s in negs)))
    return total / len(q)


def _inputs(seed, b=4, d=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)


def test_loss_matches_loop_reference_and_queue_is_fifo():
    torch.manual_seed(0)
    loss = InfoNCEQueueLoss(dim=5, queue_size=6, temperature=0.2)
    q1, k1 = _inputs(1)
    queue0 = loss.queue.clone()
    torch.testing.assert_close(queue0.norm(dim=1), torch.ones(6))
    assert loss(q1, k1).item() == pytest.approx(_reference(q1, k1, queue0, 0.2), abs=1e-5)
    # the first 4 slots now hold the normalised keys, the pointer moved to 4
    expected = queue0.clone()
    expected[:4] = torch.nn.functional.normalize(k1, dim=1)
    torch.testing.assert_close(loss.queue, expected)
    assert loss.queue_ptr.item() == 4
    # the second batch is scored against the updated queue, then wraps around: slots 4, 5, 0, 1
    q2, k2 = _inputs(2)
    assert loss(q2, k2).item() == pytest.approx(_reference(q2, k2, expected, 0.2), abs=1e-5)
    k2n = torch.nn.functional.normalize(k2, dim=1)
    expected[[4, 5, 0, 1]] = k2n
    torch.testing.assert_close(loss.queue, expected)
    assert loss.queue_ptr.item() == 2


def test_update_queue_false_leaves_queue_and_keys_get_no_gradient():
    loss = InfoNCEQueueLoss(dim=5, queue_size=8, temperature=0.07)
    before = loss.queue.clone()
    q, k = _inputs(3)
    q.requires_grad_(True)
    k.requires_grad_(True)
    value = loss(q, k, update_queue=False)
    value.backward()
    torch.testing.assert_close(loss.queue, before)
    assert loss.queue_ptr.item() == 0
    assert k.grad is None and torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
    assert value.item() == pytest.approx(_reference(q.detach(), k.detach(), before, 0.07), abs=1e-5)


def test_backward_after_enqueue_uses_the_queue_the_loss_saw():
    # The queue is overwritten in place during forward; the gradient must be that of the old queue.
    loss = InfoNCEQueueLoss(dim=5, queue_size=4)
    reference = InfoNCEQueueLoss(dim=5, queue_size=4)
    reference.queue.copy_(loss.queue)
    q, k = _inputs(4)
    q.requires_grad_(True)
    loss(q, k).backward()
    assert not torch.allclose(loss.queue, reference.queue)
    q2 = q.detach().clone().requires_grad_(True)
    reference(q2, k, update_queue=False).backward()
    torch.testing.assert_close(q.grad, q2.grad, atol=1e-7, rtol=0)


def test_errors():
    with pytest.raises(ValueError, match="temperature"):
        InfoNCEQueueLoss(4, temperature=0)
    with pytest.raises(ValueError, match="queue_size"):
        InfoNCEQueueLoss(4, queue_size=0)
    loss = InfoNCEQueueLoss(5, queue_size=3)
    with pytest.raises(ValueError, match=r"must both be \(B, 5\)"):
        loss(torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="exceed queue_size=3"):
        loss(*_inputs(5))
