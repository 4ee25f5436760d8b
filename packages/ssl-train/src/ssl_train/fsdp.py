"""FSDP (fully sharded data parallel) for large encoders, with PyTorch's FSDP2 ``fully_shard``.

Under ``distributed.strategy: fsdp`` on more than one rank, every parameter of the method is a
``DTensor`` sharded along dimension 0 over the ranks (so are its gradients and the optimiser
state built on it); a unit's full parameters exist only while it runs forward or backward.
Units: every block of every ``nn.ModuleList`` (transformer layers, so one block is gathered at a
time), then the whole method (everything else: stems, heads, momentum copies). Momentum encoders
and teachers are sharded like the online networks, so the EMA update
(:func:`ssl_models.momentum.update_momentum`) runs shard by shard with no communication.

Checkpoints stay world-size free: :func:`full_model_state` and :func:`full_optimizer_state`
gather full (unsharded) tensors onto rank 0, in the layout a one-process run writes; on load,
:func:`shard_model_state` and :func:`shard_optimizer_state` cut full tensors back into this
rank's shards. For a model without ``DTensor`` parameters all four return their input, so
:mod:`ssl_train.checkpoint` calls them unconditionally.

Reference: Zhao et al., "PyTorch FSDP: Experiences on Scaling Fully Sharded Data Parallel",
arXiv:2304.11277; Rajbhandari et al., "ZeRO", arXiv:1910.02054.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

from ssl_train.distributed import DistContext
from ssl_train.errors import SslTrainError

M = TypeVar("M", bound=nn.Module)


def is_sharded(model: nn.Module) -> bool:
    """Whether any parameter of ``model`` is a ``DTensor`` (the model went through :func:`shard_model`)."""
    return any(isinstance(p, DTensor) for p in model.parameters())


def shard_model(model: M, ctx: DistContext) -> M:
    """Shard ``model`` in place over all ranks with ``fully_shard`` (FSDP2).

    Call it on every rank, after the model is on ``ctx.device`` (and after any batch-norm
    conversion) and before the optimiser is built, so the optimiser holds the sharded
    parameters. Units: each element of every ``nn.ModuleList`` that has parameters, then the
    whole model.

    Args:
        model: The method (on ``ctx.device``), identical on every rank.
        ctx: Rank, world size and device; the device mesh is 1-D over ``ctx.world_size``.

    Returns:
        ``model`` itself (its class becomes an ``FSDPModule`` subclass of the original).

    Raises:
        SslTrainError: A parameter is a 0-dim scalar, which ``fully_shard`` cannot shard (the
            message names it).
    """
    scalars = [name for name, p in model.named_parameters() if p.ndim == 0]
    if scalars:
        raise SslTrainError(
            f"distributed.strategy=fsdp cannot shard 0-dim parameters {scalars}: FSDP2 needs "
            "every parameter to have a dimension; use distributed.strategy=ddp for this method"
        )
    mesh = init_device_mesh(ctx.device.type, (ctx.world_size,))
    blocks = [
        block
        for module in model.modules()
        if isinstance(module, nn.ModuleList)
        for block in module
        if any(True for _ in block.parameters())
    ]
    # Inner units first: fully_shard leaves already-sharded sub-modules to their own unit.
    for block in reversed(blocks):
        if not isinstance(block, FSDPModule):
            fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def set_gradient_sync(runner: nn.Module, sync: bool) -> None:
    """Reduce-scatter gradients in this backward (``sync``) or keep accumulating them unsharded
    (earlier micro-batches of gradient accumulation, FSDP's counterpart of DDP's ``no_sync``).
    A no-op unless ``runner`` is an ``FSDPModule``."""
    if isinstance(runner, FSDPModule):
        runner.set_requires_gradient_sync(sync)


def _full(value: Any, keep: bool) -> Any:
    """A ``DTensor``'s full tensor on CPU (collective: every rank calls it), or the value itself."""
    if isinstance(value, DTensor):
        full = value.full_tensor()
        return full.detach().cpu() if keep else None
    if isinstance(value, torch.Tensor):
        return value.detach().cpu() if keep else None
    return value


def full_model_state(model: nn.Module, keep: bool) -> dict[str, torch.Tensor] | None:
    """The model's full (unsharded) state dict on CPU, gathered one tensor at a time.

    Collective: every rank must call it, in the same order as the other collectives.

    Args:
        model: A model, sharded or not.
        keep: Whether this rank keeps the result (rank 0); the others get None.

    Returns:
        ``{name: tensor}`` with the shapes of the unsharded model, or None where ``keep`` is False.
    """
    out = {k: _full(v, keep) for k, v in model.state_dict().items()}
    return out if keep else None


def full_optimizer_state(optimizer: torch.optim.Optimizer, keep: bool) -> dict[str, Any] | None:
    """``optimizer.state_dict()`` with every sharded state tensor gathered to its full shape.

    The layout (integer parameter ids in ``param_groups`` order) is that of the same optimiser
    built on the unsharded model, so the result loads into a one-process or DDP run as it is.
    Collective, as :func:`full_model_state`.

    Args:
        optimizer: Built on the (sharded) model's parameters.
        keep: Whether this rank keeps the result; the others get None.
    """
    sd = optimizer.state_dict()
    state = {
        pid: {k: _full(v, keep) for k, v in st.items()} for pid, st in sorted(sd["state"].items())
    }
    return {"state": state, "param_groups": sd["param_groups"]} if keep else None


def _like(target: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """``full`` cut like ``target``: this rank's shard when ``target`` is a DTensor.

    Every rank holds the same full tensor (each read the same file), so no data is sent.
    """
    if not isinstance(target, DTensor) or isinstance(full, DTensor):
        return full
    if tuple(full.shape) != tuple(target.shape):
        return full  # load_state_dict reports the shape mismatch with its name
    return distribute_tensor(
        full.to(target.device), target.device_mesh, target.placements, src_data_rank=None
    )


def shard_model_state(
    model: nn.Module, weights: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Full weights (a checkpoint's ``model.safetensors``) as ``model.load_state_dict`` wants
    them: the shards of this rank for sharded parameters, the rest unchanged.

    Args:
        model: The model to load into (sharded or not).
        weights: ``{name: full tensor}``, identical on every rank.
    """
    if not is_sharded(model):
        return dict(weights)
    own = model.state_dict()
    return {k: _like(own[k], v) if k in own else v for k, v in weights.items()}


def shard_optimizer_state(optimizer: torch.optim.Optimizer, sd: dict[str, Any]) -> dict[str, Any]:
    """A full optimiser state dict (:func:`full_optimizer_state`'s layout) cut into this rank's
    shards wherever the parameter it belongs to is a ``DTensor``.

    Args:
        optimizer: The optimiser to load into (its ``param_groups`` give each id's parameter).
        sd: ``{"state": {id: {name: value}}, "param_groups": [...]}``.
    """
    params: dict[int, torch.Tensor] = {}
    for saved, current in zip(sd["param_groups"], optimizer.param_groups, strict=False):
        params.update(zip(saved["params"], current["params"], strict=False))
    if not any(isinstance(p, DTensor) for p in params.values()):
        return sd
    state = {
        pid: {
            k: _like(params[pid], v) if pid in params and isinstance(v, torch.Tensor) else v
            for k, v in st.items()
        }
        for pid, st in sd["state"].items()
    }
    return {"state": state, "param_groups": sd["param_groups"]}


def unsharded_copy(model: nn.Module, build: Callable[[], M], keep: bool) -> M | None:
    """A plain (unsharded) copy of a sharded model on rank 0, for evaluation and export.

    ``embed`` and the online evaluators call the encoder outside the method's forward, where a
    sharded model holds only shards; they get this copy instead. Collective, as
    :func:`full_model_state`.

    Args:
        model: The sharded model.
        build: Builds a fresh model of the same architecture (run under ``fork_rng``, so it
            leaves the training run's random streams as they were).
        keep: Whether this rank builds the copy (rank 0); the others get None.

    Returns:
        The copy, in eval mode on the model's device, or None where ``keep`` is False.
    """
    weights = full_model_state(model, keep)
    if weights is None:
        return None
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        copy = build()
    copy.load_state_dict(weights)
    return copy.to(device).eval()


__all__ = [
    "full_model_state",
    "full_optimizer_state",
    "is_sharded",
    "set_gradient_sync",
    "shard_model",
    "shard_model_state",
    "shard_optimizer_state",
    "unsharded_copy",
]
