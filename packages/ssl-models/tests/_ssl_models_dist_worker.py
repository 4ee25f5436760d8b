"""Shared by test_distributed.py and the processes it spawns (spawn needs an importable module).

Each case applies a shared linear map (a stand-in for the model, identical on every rank) to the
rank's slice of one fixed batch, then a loss with ``gather_distributed=True``.
"""

from __future__ import annotations

import datetime
import json
import os

import torch
import torch.distributed as dist

from ssl_models import BarlowTwinsLoss, MoCoV3Loss, NTXentLoss, VICRegLoss

WORLD = 2
N, D = 8, 6  # global batch and width; each rank holds N // WORLD rows
INPUTS = {
    "nt_xent": ("z_a", "z_b"),
    "moco_v3": ("z_a", "z_b", "k_a", "k_b"),
    "barlow_twins": ("z_a", "z_b"),
    "vicreg": ("z_a", "z_b"),
}


def make_loss(name: str, gather: bool = True) -> torch.nn.Module:
    if name == "nt_xent":
        return NTXentLoss(0.3, gather_distributed=gather)
    if name == "moco_v3":
        return MoCoV3Loss(0.2, gather_distributed=gather)
    if name == "barlow_twins":
        return BarlowTwinsLoss(0.05, gather_distributed=gather)
    return VICRegLoss(gather_distributed=gather)


def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    out = {k: torch.randn(N, D, generator=g) for k in ("z_a", "z_b", "k_a", "k_b")}
    out["z_b"] = out["z_a"] + 0.5 * out["z_b"]  # positives resemble their anchors
    out["weight"] = torch.eye(D) + 0.3 * torch.randn(D, D, generator=g)
    return out


def run_case(name: str, rows: slice) -> dict[str, object]:
    """Loss, input gradients and the shared weight's gradient on rows ``rows`` of the batch."""
    data = batch()
    weight = data["weight"].requires_grad_(True)
    inputs = {k: data[k][rows].clone().requires_grad_(k.startswith("z")) for k in INPUTS[name]}
    loss = make_loss(name)(*(x @ weight for x in inputs.values()))
    loss.backward()
    return {
        "loss": loss.item(),
        "input_grads": {k: x.grad.tolist() for k, x in inputs.items() if x.grad is not None},
        "keys_without_grad": [k for k, x in inputs.items() if x.grad is None],
        "weight_grad": weight.grad,
    }


def worker(rank: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60)
    )
    try:
        b = N // WORLD
        results = {"rank": rank, "world_size": dist.get_world_size()}
        for name in INPUTS:
            r = run_case(name, slice(rank * b, (rank + 1) * b))
            grad = r.pop("weight_grad")
            dist.all_reduce(grad)  # what DDP does with parameter gradients: average over ranks
            r["ddp_weight_grad"] = (grad / WORLD).tolist()
            results[name] = r
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()
