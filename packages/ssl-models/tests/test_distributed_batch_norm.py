"""DistributedBatchNorm on 2 gloo ranks equals BatchNorm on the whole batch in one process."""

import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch import nn

from ssl_models.layers import DistributedBatchNorm

# Spawned workers must import their function by module name (tests use importlib mode).
sys.path.insert(0, str(Path(__file__).parent))
from dist_bn_worker import batch, free_port, worker


def test_two_ranks_equal_one_process(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (load_file(str(tmp_path / f"{r}.safetensors")) for r in range(2))
    x, upstream = batch()
    x = x.clone().requires_grad_()
    bn = nn.BatchNorm2d(3)
    y = bn(x)
    (y * upstream).sum().backward()
    torch.testing.assert_close(torch.cat([r0["y"], r1["y"]]), y.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat([r0["x_grad"], r1["x_grad"]]), x.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(r0["w_grad"], bn.weight.grad, atol=1e-4, rtol=0)
    torch.testing.assert_close(r0["b_grad"], bn.bias.grad, atol=1e-4, rtol=0)
    torch.testing.assert_close(r0["running_mean"], bn.running_mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(r1["running_var"], bn.running_var, atol=1e-5, rtol=0)


def test_single_process_is_plain_batchnorm():
    x, _ = batch()
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(3)
    ours = DistributedBatchNorm(3)
    torch.testing.assert_close(ours(x), plain(x))
    torch.testing.assert_close(ours.running_var, plain.running_var)
    ours.eval()
    plain.eval()
    torch.testing.assert_close(ours(x), plain(x))


def test_conversion_keeps_parameter_objects_and_frozen_flags():
    from ssl_models.layers import convert_to_distributed_batchnorm

    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Sequential(nn.BatchNorm1d(3)))
    model[2][0].requires_grad_(False)
    params = list(model.parameters())
    keys = list(model.state_dict())
    converted = convert_to_distributed_batchnorm(model)
    assert isinstance(converted[1], DistributedBatchNorm) and isinstance(
        converted[2][0], DistributedBatchNorm
    )
    assert all(a is b for a, b in zip(params, converted.parameters()))
    assert list(converted.state_dict()) == keys
    assert not converted[2][0].weight.requires_grad and converted[1].weight.requires_grad
