"""CLIPLoss: value vs a NumPy reference, the temperature clamp, autocast, and 2 gloo processes
holding half a batch each matching one process on the whole batch."""

import json
import math
import socket
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from ssl_models.losses.clip import CLIPLoss


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _reference(z_a, z_b, scale):
    """Symmetric InfoNCE in float64 NumPy (arXiv:2103.00020, figure 3)."""
    a = z_a / np.linalg.norm(z_a, axis=1, keepdims=True)
    b = z_b / np.linalg.norm(z_b, axis=1, keepdims=True)
    logits = scale * a @ b.T

    def ce_rows(m):
        m = m - m.max(1, keepdims=True)
        return -(np.diag(m) - np.log(np.exp(m).sum(1))).mean()

    return (ce_rows(logits) + ce_rows(logits.T)) / 2


def test_value_matches_numpy_reference_on_fixed_4x4():
    z_a = np.array([[1.0, 0.0, 0.5], [0.2, 1.0, 0.0], [0.0, 0.3, 1.0], [1.0, 1.0, 1.0]])
    z_b = np.array([[0.9, 0.1, 0.4], [0.0, 1.0, 0.2], [0.1, 0.2, 0.8], [-1.0, 0.5, 1.0]])
    loss_fn = CLIPLoss()  # tau = 0.07
    assert loss_fn.scale().item() == pytest.approx(1 / 0.07, rel=1e-6)
    got = loss_fn(torch.tensor(z_a, dtype=torch.float32), torch.tensor(z_b, dtype=torch.float32))
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(_reference(z_a, z_b, 1 / 0.07), abs=1e-5)
    # not symmetric in general: the column term differs from the row term on this matrix
    a = z_a / np.linalg.norm(z_a, axis=1, keepdims=True)
    b = z_b / np.linalg.norm(z_b, axis=1, keepdims=True)
    sims = a @ b.T / 0.07
    rows = -(np.diag(sims) - np.log(np.exp(sims).sum(1))).mean()
    assert abs(rows - got.item()) > 1e-3


def test_temperature_is_learned_and_clamped():
    loss_fn = CLIPLoss(init_temperature=0.07, max_logit_scale=100.0)
    g = torch.Generator().manual_seed(1)
    z_a, z_b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    loss_fn(z_a, z_b).backward()
    assert loss_fn.logit_scale.grad is not None and loss_fn.logit_scale.grad.item() != 0.0
    with torch.no_grad():
        loss_fn.logit_scale.fill_(math.log(1000.0))  # as if the optimiser overshot
    assert loss_fn.scale().item() == pytest.approx(100.0)
    # logits reach +-100 here, so float32 carries about 1e-5 of rounding: compare relatively
    assert loss_fn(z_a, z_b).item() == pytest.approx(
        _reference(z_a.double().numpy(), z_b.double().numpy(), 100.0), rel=1e-6
    )
    loss_fn.logit_scale.grad = None
    loss_fn(z_a, z_b).backward()
    assert loss_fn.logit_scale.grad.item() == 0.0  # clamped: no push further out
    loss_fn.clamp_()
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(100.0))
    with torch.no_grad():
        loss_fn.logit_scale.fill_(-3.0)
    loss_fn.clamp_()
    assert loss_fn.logit_scale.item() == 0.0  # temperature at most 1
    with pytest.raises(ValueError, match="exceeds max_logit_scale"):
        CLIPLoss(init_temperature=0.001)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        loss_fn(torch.randn(3, 4), torch.randn(2, 4))


def _autocast_dtype_works(dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.autocast("cpu", dtype=dtype):
                return (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == dtype
        except (RuntimeError, TypeError):
            return False


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_finite_and_close_to_float32(dtype):
    if not _autocast_dtype_works(dtype):
        pytest.skip(f"this torch's CPU autocast does not support {dtype}")
    g = torch.Generator().manual_seed(0)
    base = torch.randn(16, 32, generator=g)
    z_a = base + 0.01 * torch.randn(16, 32, generator=g)  # near-identical pairs: sharp logits
    z_b = base + 0.01 * torch.randn(16, 32, generator=g)
    w = torch.eye(32)
    loss_fn = CLIPLoss(init_temperature=0.01)  # the clamp: scale 100
    ref = loss_fn(z_a @ w, z_b @ w)
    with torch.autocast("cpu", dtype=dtype):
        za, zb = z_a @ w, z_b @ w
        assert za.dtype == dtype
        got = loss_fn(za, zb)
    assert got.dtype == torch.float32 and torch.isfinite(got)
    assert abs(got.item() - ref.item()) < 1e-2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_ranks_equal_one_process(tmp_path):
    here = str(Path(__file__).parent)
    sys.path.insert(0, here)  # spawned children inherit sys.path and import the worker by name
    try:
        import _ssl_models_clip_dist_worker as w

        mp.spawn(w.worker, args=(_free_port(), str(tmp_path)), nprocs=w.WORLD, join=True)
        results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(w.WORLD)]
    finally:
        sys.path.remove(here)
    assert [r["world_size"] for r in results] == [2, 2]
    full = w.run_case(slice(None))  # no process group here: gather is the identity
    b = w.N // w.WORLD
    assert sum(r["loss"] for r in results) / w.WORLD == pytest.approx(full["loss"], abs=1e-6)
    for rank, r in enumerate(results):
        for key in ("grad_x_a", "grad_x_b"):
            expected = np.asarray(full[key])[rank * b : (rank + 1) * b]
            # DDP averages over ranks: the rank's own-input gradient / W is the global one
            np.testing.assert_allclose(np.asarray(r[key]) / w.WORLD, expected, atol=1e-6, rtol=0)
        np.testing.assert_allclose(
            np.asarray(r["ddp_grad_params"]), full["grad_params"].numpy(), atol=1e-6, rtol=0
        )
    # a rank scoring only its own half (no gather) would see another loss
    data = w.batch()
    half = CLIPLoss(init_temperature=0.2)(
        data["x_a"][:b] @ data["w_a"], data["x_b"][:b] @ data["w_b"]
    ).item()
    assert abs(half - results[0]["loss"]) > 1e-3
