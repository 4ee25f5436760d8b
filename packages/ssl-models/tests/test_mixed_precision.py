"""Losses under CPU autocast: finite and within 1e-2 of float32, even at temperature 0.05 with
near-identical embeddings (where float16 exp(1 / 0.05) overflows and bfloat16 logits are coarse)."""

import warnings

import pytest
import torch

from ssl_models import (
    BarlowTwinsLoss,
    BYOLLoss,
    InfoNCEQueueLoss,
    MoCoV3Loss,
    NTXentLoss,
    SimSiamLoss,
    VICRegLoss,
)


@pytest.fixture(autouse=True)
def _one_thread():
    # Small ops run many times slower with 2 threads when another process holds a core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


B, D, T = 16, 32, 0.05


def _matmul_dtype_under_autocast(dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.autocast("cpu", dtype=dtype):
                return (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        except (RuntimeError, TypeError):
            return None


def _queue_loss():
    torch.manual_seed(0)
    return InfoNCEQueueLoss(D, queue_size=64, temperature=T)


LOSSES = {
    "nt_xent": (lambda: NTXentLoss(T), 2),
    "info_nce_queue": (_queue_loss, 2),
    "moco_v3": (lambda: MoCoV3Loss(T), 4),
    "byol": (BYOLLoss, 4),
    "simsiam": (SimSiamLoss, 4),
    "barlow_twins": (BarlowTwinsLoss, 2),
    "vicreg": (VICRegLoss, 2),
}

DTYPES = [
    torch.bfloat16,
    pytest.param(
        torch.float16,
        marks=pytest.mark.skipif(
            _matmul_dtype_under_autocast(torch.float16) != torch.float16,
            reason="this torch's CPU autocast does not support float16",
        ),
    ),
]


def _near_identical_inputs(n_inputs, dtype):
    """All embeddings near one vector (cosines about 0.99, so every logit is near 1 / T = 20) and
    the views of a sample 1e-3 apart; rounded to ``dtype`` so both runs see the same values."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, D, generator=g) + 0.1 * torch.randn(B, D, generator=g)
    xs = [base + 1e-3 * torch.randn(B, D, generator=g) for _ in range(n_inputs)]
    return [x.to(dtype).float() for x in xs]


def _loss_and_grads(make, xs, dtype=None):
    leaves = [x.detach().to(dtype or torch.float32).requires_grad_(True) for x in xs]
    if dtype is None:
        loss = make()(*leaves)
    else:
        with torch.autocast("cpu", dtype=dtype):
            loss = make()(*leaves)
    loss.backward()
    grads = [torch.zeros(B, D) if x.grad is None else x.grad.float() for x in leaves]
    return loss, grads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LOSSES))
def test_autocast_matches_float32(name, dtype):
    make, n_inputs = LOSSES[name]
    xs = _near_identical_inputs(n_inputs, dtype)
    loss32, grads32 = _loss_and_grads(make, xs)
    loss_lp, grads_lp = _loss_and_grads(make, xs, dtype)
    assert loss_lp.dtype == torch.float32 and torch.isfinite(loss_lp)
    assert abs(loss_lp.item() - loss32.item()) <= 1e-2
    for g_lp, g32 in zip(grads_lp, grads32):
        assert torch.isfinite(g_lp).all()
        torch.testing.assert_close(g_lp, g32, atol=1e-2, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_setting_is_hard_for_a_naive_loss(dtype):
    """Control: NT-Xent written as eq. (1) and run in the low precision (exp of the similarities)
    overflows in float16 and is off by more than the 1e-2 tolerance in bfloat16, so the test above
    can fail."""
    a, p = _near_identical_inputs(2, dtype)
    z = torch.nn.functional.normalize(torch.cat([a, p]).to(dtype), dim=1)
    e = torch.exp(z @ z.T / T).masked_fill(torch.eye(2 * B, dtype=torch.bool), 0)
    positives = torch.cat([torch.arange(B, 2 * B), torch.arange(B)])
    naive = -torch.log(e[torch.arange(2 * B), positives] / e.sum(dim=1)).float().mean()
    exact = NTXentLoss(T)(a, p)
    assert not torch.isfinite(naive) or abs(naive.item() - exact.item()) > 1e-2
