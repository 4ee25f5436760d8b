"""LARS against an independent NumPy computation of You et al.'s update (arXiv:1708.03888)."""

import copy

import numpy as np
import pytest
import torch

from ssl_train import recipe_from_dict
from ssl_train.lars import LARS
from ssl_train.optim import build_optimizer
from ssl_train.recipe import OptimizerConfig


def _reference_steps(w, grads, lr, momentum, wd, eta, adapt):
    """Plain NumPy, float64: d = g + wd w; d *= eta |w| / |d|; buf = m buf + d; w -= lr buf."""
    w = w.astype(np.float64).copy()
    buf = np.zeros_like(w)
    for g in grads:
        d = g.astype(np.float64) + wd * w
        if adapt:
            wn, dn = np.sqrt((w**2).sum()), np.sqrt((d**2).sum())
            d = d * (eta * wn / dn if wn > 0 and dn > 0 else 1.0)
        buf = momentum * buf + d
        w = w - lr * buf
    return w


def _run(params, grads_per_param, groups):
    opt = LARS(groups, lr=0.1)
    for step in range(len(grads_per_param[0])):
        for p, grads in zip(params, grads_per_param):
            p.grad = torch.from_numpy(grads[step]).float()
        opt.step()
    return opt


def test_two_steps_match_the_reference_with_and_without_adaptation():
    rng = np.random.default_rng(0)
    w0, b0 = rng.normal(size=(5, 7)), rng.normal(size=7)
    gw = [rng.normal(size=(5, 7)) * 3, rng.normal(size=(5, 7)) * 0.01]
    gb = [rng.normal(size=7), rng.normal(size=7)]
    w = torch.nn.Parameter(torch.from_numpy(w0).float())
    b = torch.nn.Parameter(torch.from_numpy(b0).float())
    groups = [
        {"params": [w], "lr": 2.0, "momentum": 0.9, "weight_decay": 1e-2,
         "trust_coefficient": 0.02},
        {"params": [b], "lr": 0.5, "momentum": 0.8, "weight_decay": 0.0,
         "lars_adaptation": False},
    ]  # fmt: skip
    _run([w, b], [gw, gb], groups)
    ref_w = _reference_steps(w0, gw, 2.0, 0.9, 1e-2, 0.02, adapt=True)
    ref_b = _reference_steps(b0, gb, 0.5, 0.8, 0.0, 0.001, adapt=False)
    np.testing.assert_allclose(w.detach().numpy() - w0, ref_w - w0, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(b.detach().numpy() - b0, ref_b - b0, rtol=1e-5, atol=1e-7)
    # The adapted update really differs from plain SGD with momentum (else the test proves nothing).
    plain = _reference_steps(w0, gw, 2.0, 0.9, 1e-2, 0.02, adapt=False)
    assert np.abs(plain - ref_w).max() > 10 * np.abs(ref_w - w.detach().numpy()).max()


def test_first_step_length_is_lr_eta_weight_norm_whatever_the_gradient_scale():
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(4, 4))
    for scale in (1e-4, 1.0, 1e4):
        w = torch.nn.Parameter(torch.from_numpy(w0.copy()))  # float64: the step is 1e-3 of |w|
        w.grad = torch.from_numpy(rng.normal(size=(4, 4)) * scale)
        LARS([w], lr=0.5, trust_coefficient=0.001).step()
        step = np.linalg.norm(w.detach().numpy() - w0)
        assert step == pytest.approx(0.5 * 0.001 * np.linalg.norm(w0), rel=1e-9)


def test_zero_weight_or_gradient_falls_back_to_ratio_one():
    w = torch.nn.Parameter(torch.zeros(3, 3))
    w.grad = torch.full((3, 3), 2.0)
    LARS([w], lr=0.1, weight_decay=0.5).step()
    torch.testing.assert_close(w.detach(), torch.full((3, 3), -0.2))  # -lr * g, ratio 1
    v = torch.nn.Parameter(torch.ones(2, 2))
    v.grad = torch.zeros(2, 2)
    LARS([v], lr=0.1).step()
    torch.testing.assert_close(v.detach(), torch.ones(2, 2))


def test_state_round_trip_continues_identically():
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    twin = torch.nn.Linear(6, 3)
    twin.load_state_dict(model.state_dict())
    x = torch.randn(16, 6)
    opt = LARS(model.parameters(), lr=1.0, weight_decay=1e-4)
    for _ in range(2):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    opt2 = LARS(twin.parameters(), lr=1.0, weight_decay=1e-4)
    twin.load_state_dict(model.state_dict())
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as from a checkpoint file
    for m, o in ((model, opt), (twin, opt2)):
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_build_optimizer_excludes_biases_and_norms_from_adaptation_and_decay(tiny_tree):
    recipe = recipe_from_dict(
        tiny_tree,
        ["optimizer.name=lars", "optimizer.lr=0.3", "optimizer.weight_decay=1e-4",
         "optimizer.trust_coefficient=0.002"],
    )  # fmt: skip
    assert recipe.optimizer.name == "lars"
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5))
    opt = build_optimizer(model, recipe.optimizer)
    assert isinstance(opt, LARS)
    decayed, excluded = opt.param_groups
    assert decayed["lars_adaptation"] and decayed["weight_decay"] == 1e-4
    assert decayed["trust_coefficient"] == 0.002 and decayed["momentum"] == 0.9
    assert not excluded["lars_adaptation"] and excluded["weight_decay"] == 0.0
    assert [tuple(p.shape) for p in decayed["params"]] == [(5, 4)]
    assert len(excluded["params"]) == 3  # linear bias, batch-norm weight and bias
    bias = model[0].bias
    before = bias.detach().clone()
    bias.grad = torch.ones(5)
    opt.step()
    torch.testing.assert_close(bias.detach(), before - 0.3)  # plain SGD step on the bias


def test_bad_values_are_named():
    p = [torch.nn.Parameter(torch.ones(2))]
    with pytest.raises(ValueError, match="trust_coefficient must be > 0, got 0"):
        LARS(p, lr=0.1, trust_coefficient=0)
    with pytest.raises(ValueError, match="momentum must be in"):
        LARS(p, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        LARS(p, lr=0.0)
    assert OptimizerConfig(name="lars").trust_coefficient == 0.001
