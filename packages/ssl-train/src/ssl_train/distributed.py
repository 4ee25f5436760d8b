"""Process-group set-up for ``torchrun`` (DDP), and the ``--nproc`` launcher shortcut."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process runs: its rank, the world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, shows the progress bar and writes checkpoints."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op in one process)."""
        if self.world_size > 1:
            dist.barrier()


def init_distributed(device: str = "auto", backend: str = "auto") -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
        backend: ``"auto"`` (NCCL on CUDA, gloo on CPU), ``"gloo"`` or ``"nccl"``.

    Returns:
        The context; ``world_size == 1`` when not launched by torchrun.

    Raises:
        RuntimeError: ``device="cuda"`` but CUDA is not available.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("trainer.device is 'cuda' but torch sees no CUDA device")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device, local_rank) if device == "cuda" else torch.device("cpu")
    if device == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        chosen = backend if backend != "auto" else ("nccl" if device == "cuda" else "gloo")
        dist.init_process_group(chosen)
    return DistContext(rank, world, local_rank, dev)


def shutdown_distributed() -> None:
    """Leave the process group (safe when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor, world_size: int) -> torch.Tensor:
    """Mean of a tensor over ranks (the tensor itself in one process)."""
    if world_size == 1:
        return value
    out = value.detach().clone()
    dist.all_reduce(out)
    return out / world_size


def launch_with_torchrun(nproc: int, cli_args: Sequence[str]) -> int:
    """Re-run ``ssl-train`` under ``torchrun --standalone --nproc_per_node nproc``.

    Args:
        nproc: Processes on this machine (>= 1).
        cli_args: The ssl-train arguments, without ``--nproc``.

    Returns:
        torchrun's exit code.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "ssl_train.cli", *cli_args]  # fmt: skip
    return subprocess.call(cmd)
