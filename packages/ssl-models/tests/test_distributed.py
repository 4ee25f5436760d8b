"""gather_distributed losses: 2 gloo processes holding half a batch each match 1 process."""

import json
import math
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from ssl_models import distributed


@pytest.fixture(autouse=True)
def _one_thread():
    # Small ops run many times slower with 2 threads when another process holds a core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_single_process_helpers_are_identities():
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.gather(x) is x
    assert distributed.world_size() == 1 and distributed.rank() == 0
    assert not distributed.is_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Run every case in ONE spawned group of 2 processes; returns (worker module, results)."""
    here = str(Path(__file__).parent)
    sys.path.insert(0, here)  # spawned children inherit sys.path and import the worker by name
    try:
        import _ssl_models_dist_worker as w

        out = tmp_path_factory.mktemp("ddp")
        mp.spawn(w.worker, args=(_free_port(), str(out)), nprocs=w.WORLD, join=True)
        results = [json.loads((out / f"rank{r}.json").read_text()) for r in range(w.WORLD)]
    finally:
        sys.path.remove(here)
    return w, results


@pytest.mark.parametrize("name", ["nt_xent", "moco_v3", "barlow_twins", "vicreg"])
def test_two_ranks_equal_one_process(two_ranks, name):
    w, results = two_ranks
    assert [r["world_size"] for r in results] == [2, 2]
    full = w.run_case(name, slice(None))  # no process group here: gather is the identity
    b = w.N // w.WORLD
    # loss: the mean of the per-rank losses is the single-process loss
    mean_loss = sum(r[name]["loss"] for r in results) / w.WORLD
    assert mean_loss == pytest.approx(full["loss"], abs=1e-6)
    # inputs: each rank's gradient, averaged over ranks as DDP does (divided by the world size),
    # is the single-process gradient of that rank's rows
    for rank, r in enumerate(results):
        assert r[name]["keys_without_grad"] == full["keys_without_grad"]
        for key, grad in r[name]["input_grads"].items():
            expected = np.asarray(full["input_grads"][key])[rank * b : (rank + 1) * b]
            np.testing.assert_allclose(np.asarray(grad) / w.WORLD, expected, atol=1e-6, rtol=0)
        # parameters: DDP's averaged gradient equals the single-process gradient
        np.testing.assert_allclose(
            np.asarray(r[name]["ddp_weight_grad"]), full["weight_grad"].numpy(), atol=1e-6, rtol=0
        )


def _transformed(w, rows=slice(None)):
    data = w.batch()
    return {k: (data[k] @ data["weight"])[rows] for k in ("z_a", "z_b", "k_a", "k_b")}


def _nt_xent_anchor_losses(z_a, z_b, t):
    """Per-anchor NT-Xent terms over the whole batch, by loops (arXiv:2002.05709, eq. 1)."""
    z = torch.nn.functional.normalize(torch.cat([z_a, z_b]), dim=1).double().tolist()
    n, b = len(z), len(z) // 2
    out = []
    for i in range(n):
        sims = [sum(x * y for x, y in zip(z[i], z[k])) / t for k in range(n)]
        denom = sum(math.exp(s) for k, s in enumerate(sims) if k != i)
        out.append(-(sims[(i + b) % n] - math.log(denom)))
    return out


def test_rank_losses_use_offset_positives(two_ranks):
    """Rank r's NT-Xent is the mean of exactly its own anchors' terms in the global batch, and its
    MoCo v3 loss that of its own queries: positives sit at global row local_index + rank * B."""
    w, results = two_ranks
    z = _transformed(w)
    b = w.N // w.WORLD
    terms = _nt_xent_anchor_losses(z["z_a"], z["z_b"], 0.3)
    for rank, r in enumerate(results):
        own = [i + rank * b for i in range(b)] + [w.N + i + rank * b for i in range(b)]
        expected = sum(terms[i] for i in own) / len(own)
        assert r["nt_xent"]["loss"] == pytest.approx(expected, abs=1e-6)
        # a rank that took the local row as the positive's index would match this instead:
        wrong = sum(terms[i] for i in list(range(b)) + list(range(w.N, w.N + b))) / (2 * b)
        if rank == 1:
            assert abs(r["nt_xent"]["loss"] - wrong) > 1e-3

    def ctr_terms(q, k, t):
        q = torch.nn.functional.normalize(q, dim=1).double()
        k = torch.nn.functional.normalize(k, dim=1).double()
        logits = (q @ k.T / t).tolist()
        return [-(row[i] - math.log(sum(math.exp(s) for s in row))) for i, row in enumerate(logits)]

    ab, ba = ctr_terms(z["z_a"], z["k_b"], 0.2), ctr_terms(z["z_b"], z["k_a"], 0.2)
    for rank, r in enumerate(results):
        rows = range(rank * b, (rank + 1) * b)
        expected = 2 * 0.2 * (sum(ab[i] for i in rows) + sum(ba[i] for i in rows)) / b
        assert r["moco_v3"]["loss"] == pytest.approx(expected, abs=1e-6)


def test_global_statistics_on_every_rank(two_ranks):
    """Barlow Twins returns the global loss on every rank; VICReg's variance and covariance are
    global while its invariance term is the rank's own."""
    w, results = two_ranks
    z = _transformed(w)
    full_barlow = w.make_loss("barlow_twins", gather=False)(z["z_a"], z["z_b"]).item()
    vicreg = w.make_loss("vicreg", gather=False)
    b = w.N // w.WORLD
    var_cov = (
        vicreg(z["z_a"], z["z_b"]).item()
        - 25.0 * torch.nn.functional.mse_loss(z["z_a"], z["z_b"]).item()
    )
    for rank, r in enumerate(results):
        assert r["barlow_twins"]["loss"] == pytest.approx(full_barlow, abs=1e-6)
        rows = slice(rank * b, (rank + 1) * b)
        local_inv = torch.nn.functional.mse_loss(z["z_a"][rows], z["z_b"][rows]).item()
        assert r["vicreg"]["loss"] == pytest.approx(var_cov + 25.0 * local_inv, abs=1e-5)
