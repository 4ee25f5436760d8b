"""Worker of test_distributed_batch_norm.py (a module of its own so spawned processes import it)."""

import socket

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch import nn

from ssl_models.layers import DistributedBatchNorm, convert_to_distributed_batchnorm


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 4, 5, generator=g) * 3 + 1, torch.randn(8, 3, 4, 5, generator=g)


def worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    x, upstream = batch()
    torch.manual_seed(1)
    bn = convert_to_distributed_batchnorm(nn.Sequential(nn.BatchNorm2d(3)))[0]
    assert isinstance(bn, DistributedBatchNorm)
    xs = x[rank * 4 : (rank + 1) * 4].clone().requires_grad_()
    y = bn(xs)
    (y * upstream[rank * 4 : (rank + 1) * 4]).sum().backward()
    grads = [bn.weight.grad.clone(), bn.bias.grad.clone()]
    for gr in grads:
        dist.all_reduce(gr)  # what DDP sums (before its averaging)
    save_file(
        {"y": y.detach().contiguous(), "x_grad": xs.grad.contiguous(), "w_grad": grads[0], "b_grad": grads[1],
         "running_mean": bn.running_mean, "running_var": bn.running_var},
        f"{out}/{rank}.safetensors",
    )  # fmt: skip
    dist.destroy_process_group()
