"""Worker of test_moco_shuffle_bn.py (a module of its own so spawned processes import it)."""

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from ssl_models import MoCoV2, SmallCNN

PERM_SEED = 123


def model() -> MoCoV2:
    torch.manual_seed(0)
    return MoCoV2(SmallCNN(in_channels=1, widths=(4, 8)), projection_hidden_dim=8,
                  projection_dim=4, queue_size=16)  # fmt: skip


def keys_batch() -> torch.Tensor:
    """8 key views; the second half brighter so per-rank batch-norm statistics differ."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 12, 12, generator=g)
    x[4:] = x[4:] * 3 + 2
    return x


def worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    m = model()
    x = keys_batch()[rank * 4 : (rank + 1) * 4]
    torch.manual_seed(PERM_SEED)  # rank 0 draws the permutation from the global RNG
    shuffled = m.keys(x)
    m.shuffle_batch_norm = False
    local = m.keys(x)
    save_file({"shuffled": shuffled.contiguous(), "local": local.contiguous()},
              f"{out}/{rank}.safetensors")  # fmt: skip
    dist.destroy_process_group()
