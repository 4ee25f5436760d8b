"""Shared by test_clip_loss.py and the processes it spawns (spawn needs an importable module).

A shared linear map per modality (a stand-in for two encoders, identical on every rank) is
applied to the rank's slice of one fixed batch of pairs, then CLIPLoss(gather_distributed=True).
"""

from __future__ import annotations

import datetime
import json
import os

import torch
import torch.distributed as dist

from ssl_models.losses.clip import CLIPLoss

WORLD = 2
N, D = 8, 5  # global batch of pairs and width; each rank holds N // WORLD rows


def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(4321)
    out = {k: torch.randn(N, D, generator=g) for k in ("x_a", "x_b", "w_a", "w_b")}
    out["x_b"] = out["x_a"] + 0.7 * out["x_b"]  # pairs resemble each other
    out["w_a"] = torch.eye(D) + 0.3 * torch.randn(D, D, generator=g)
    out["w_b"] = torch.eye(D) + 0.3 * torch.randn(D, D, generator=g)
    return out


def run_case(rows: slice) -> dict[str, object]:
    """Loss and gradients (inputs, shared weights, logit scale) on rows ``rows`` of the batch."""
    data = batch()
    torch.manual_seed(0)
    loss_fn = CLIPLoss(init_temperature=0.2, gather_distributed=True)
    w_a, w_b = data["w_a"].requires_grad_(True), data["w_b"].requires_grad_(True)
    x_a = data["x_a"][rows].clone().requires_grad_(True)
    x_b = data["x_b"][rows].clone().requires_grad_(True)
    loss = loss_fn(x_a @ w_a, x_b @ w_b)
    loss.backward()
    return {
        "loss": loss.item(),
        "grad_x_a": x_a.grad.tolist(),
        "grad_x_b": x_b.grad.tolist(),
        "grad_params": torch.cat(
            [w_a.grad.flatten(), w_b.grad.flatten(), loss_fn.logit_scale.grad.reshape(1)]
        ),
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
        r = run_case(slice(rank * b, (rank + 1) * b))
        grad = r.pop("grad_params")
        dist.all_reduce(grad)  # what DDP does with parameter gradients: average over ranks
        r["ddp_grad_params"] = (grad / WORLD).tolist()
        r["world_size"] = dist.get_world_size()
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(r, f)
    finally:
        dist.destroy_process_group()
