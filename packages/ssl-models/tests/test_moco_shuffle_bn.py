"""MoCo v2's shuffling batch norm on 2 gloo ranks equals the same permutation done by hand."""

import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from ssl_models.distributed import batch_shuffle, batch_unshuffle

# Spawned workers must import their function by module name (tests use importlib mode).
sys.path.insert(0, str(Path(__file__).parent))
from dist_bn_worker import free_port
from moco_shuffle_worker import PERM_SEED, keys_batch, model, worker


def test_keys_use_statistics_of_the_shuffled_global_batch(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (load_file(str(tmp_path / f"{r}.safetensors")) for r in range(2))
    x = keys_batch()
    m = model()
    torch.manual_seed(PERM_SEED)
    perm = torch.randperm(8)
    with torch.no_grad():  # each half of the permuted batch through the key branch, train mode
        out = torch.cat([m.momentum_forward(x[perm[:4]]), m.momentum_forward(x[perm[4:]])])
    expected = out[torch.argsort(perm)]
    torch.testing.assert_close(torch.cat([r0["shuffled"], r1["shuffled"]]), expected,
                               atol=1e-6, rtol=0)  # fmt: skip
    # Without shuffling each rank's keys use that rank's own statistics: different values.
    with torch.no_grad():
        local = torch.cat([m.momentum_forward(x[:4]), m.momentum_forward(x[4:])])
    torch.testing.assert_close(torch.cat([r0["local"], r1["local"]]), local, atol=1e-6, rtol=0)
    assert (local - expected).abs().max() > 1e-2


def test_single_process_is_a_no_op():
    x = keys_batch()
    shuffled, unshuffle = batch_shuffle(x)
    assert shuffled is x and unshuffle is None
    assert batch_unshuffle(x, None) is x
    m = model()
    with torch.no_grad():
        torch.testing.assert_close(m.keys(x), m.momentum_forward(x))
