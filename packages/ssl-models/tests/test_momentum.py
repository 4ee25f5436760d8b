import math

import pytest
import torch
from torch import nn

from ssl_models import BYOL, SmallCNN, cosine_momentum, momentum_copy, update_momentum


@pytest.fixture(autouse=True)
def _one_thread():
    # Small ops run many times slower with 2 threads when another process holds a core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_cosine_momentum_schedule():
    assert cosine_momentum(0, 100, 0.996) == 0.996
    assert cosine_momentum(100, 100, 0.996) == 1.0
    assert cosine_momentum(50, 100, 0.99) == pytest.approx(0.995, abs=1e-12)
    # BYOL, arXiv:2006.07733: 1 - (1 - base) (cos(pi k / K) + 1) / 2
    assert cosine_momentum(30, 120, 0.9) == pytest.approx(
        1 - 0.1 * (math.cos(math.pi * 30 / 120) + 1) / 2, abs=1e-15
    )
    taus = [cosine_momentum(k, 37, 0.5) for k in range(38)]
    assert all(a < b for a, b in zip(taus, taus[1:]))


@pytest.mark.parametrize(
    "args,match",
    [
        ((-1, 10, 0.9), "step"),
        ((11, 10, 0.9), "step"),
        ((0, 0, 0.9), "total_steps"),
        ((0, 10, 1.5), "base"),
    ],
)
def test_cosine_momentum_errors(args, match):
    with pytest.raises(ValueError, match=match):
        cosine_momentum(*args)


def _net():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def test_update_momentum_is_ema_of_params_and_copies_buffers():
    torch.manual_seed(0)
    online, target = _net(), _net()
    online(torch.randn(8, 3))  # moves the online BN running statistics
    before = {k: v.clone() for k, v in target.state_dict().items()}
    update_momentum(online, target, 0.75)
    for name, p in online.named_parameters():
        expected = 0.75 * before[name] + 0.25 * p.detach()
        torch.testing.assert_close(dict(target.named_parameters())[name], expected)
    for name, buf in online.named_buffers():
        assert torch.equal(dict(target.named_buffers())[name], buf)
    assert target[1].num_batches_tracked.item() == 1
    update_momentum(online, target, 1.0)  # tau = 1 keeps the parameters
    update_momentum(online, target, 0.0)  # tau = 0 copies them
    for p, q in zip(online.parameters(), target.parameters()):
        assert torch.equal(p, q)


def test_update_momentum_errors():
    with pytest.raises(ValueError, match="tau"):
        update_momentum(_net(), _net(), 1.5)
    with pytest.raises(ValueError, match="differ"):
        update_momentum(_net(), nn.Sequential(nn.Linear(3, 4)), 0.5)
    with pytest.raises(ValueError, match="shape"):
        update_momentum(nn.Linear(3, 4), nn.Linear(3, 5), 0.5)


def test_momentum_copy_is_frozen_and_independent():
    online = _net()
    target = momentum_copy(online)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())
    for p, q in zip(online.parameters(), target.parameters()):
        assert torch.equal(p, q) and p.data_ptr() != q.data_ptr()


def test_after_optimizer_step_follows_the_schedule():
    """After k optimiser steps the target equals the EMA computed by hand with
    tau_j = cosine_momentum(j - 1, K, base) for the update after step j; BN buffers are copied."""
    torch.manual_seed(0)
    method = BYOL(
        SmallCNN(widths=(4, 8)),
        projection_hidden_dim=8,
        projection_dim=4,
        prediction_hidden_dim=8,
        base_momentum=0.9,
    )
    total = 5
    expected = {k: v.clone() for k, v in method.encoder.named_parameters()}
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    x = torch.randn(6, 1, 12, 12)
    for step in range(1, 4):
        loss = method.training_loss([x, x.flip(-1)])
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.after_optimizer_step(step, total)
        tau = 1 - 0.1 * (math.cos(math.pi * (step - 1) / total) + 1) / 2
        for name, p in method.encoder.named_parameters():
            expected[name] = tau * expected[name] + (1 - tau) * p.detach()
        assert method.momentum == pytest.approx(tau)
    for name, p in method.momentum_encoder.named_parameters():
        torch.testing.assert_close(p, expected[name], atol=1e-6, rtol=0)
        assert not torch.equal(p, dict(method.encoder.named_parameters())[name])
    for name, buf in method.momentum_encoder.named_buffers():
        assert torch.equal(buf, dict(method.encoder.named_buffers())[name])
    with pytest.raises(ValueError, match="step must be in"):
        method.after_optimizer_step(0, total)


def test_constant_schedule_keeps_base_momentum():
    m = BYOL(SmallCNN(widths=(4, 8)), 8, 4, 8, base_momentum=0.5, momentum_schedule="constant")
    m.after_optimizer_step(3, 4)
    assert m.momentum == 0.5
    with pytest.raises(ValueError, match="momentum_schedule"):
        BYOL(SmallCNN(widths=(4, 8)), 8, 4, 8, momentum_schedule="linear")
