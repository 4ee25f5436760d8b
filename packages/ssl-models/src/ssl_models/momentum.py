"""Momentum (EMA) encoders: the target network of BYOL and the key encoder of MoCo."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def cosine_momentum(step: int, total_steps: int, base: float) -> float:
    """BYOL's momentum schedule, rising from ``base`` to 1 along a half cosine.

    ``tau(k) = 1 - (1 - base) * (cos(pi * k / K) + 1) / 2``, so ``tau(0) = base``,
    ``tau(K) = 1``, and ``tau`` never decreases in between.

    Args:
        step: k, optimiser steps done, ``0 <= step <= total_steps``.
        total_steps: K, optimiser steps in the whole run (>= 1).
        base: ``tau(0)`` in ``[0, 1]`` (0.996 in BYOL, 0.99 in MoCo v3).

    Returns:
        The momentum ``tau(k)`` in ``[base, 1]``.

    Raises:
        ValueError: ``total_steps < 1``, ``step`` outside ``[0, total_steps]``, or ``base``
            outside ``[0, 1]``.

    Reference: Grill et al., "Bootstrap Your Own Latent", arXiv:2006.07733, section 3.3 (the
    target network's decay rate).
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= step <= total_steps:
        raise ValueError(f"step must be in [0, total_steps={total_steps}], got {step}")
    if not 0.0 <= base <= 1.0:
        raise ValueError(f"base momentum must be in [0, 1], got {base}")
    return 1.0 - (1.0 - base) * (math.cos(math.pi * step / total_steps) + 1.0) / 2.0


@torch.no_grad()
def update_momentum(online: nn.Module, target: nn.Module, tau: float) -> None:
    """In place, without autograd: ``target_param = tau * target_param + (1 - tau) * online_param``
    for every parameter, and every buffer (e.g. batch-norm running statistics) copied from
    ``online``.

    Args:
        online: The network trained by the optimiser.
        target: Its momentum copy, with the same parameter and buffer names and shapes (e.g. from
            :func:`momentum_copy`).
        tau: Momentum in ``[0, 1]``; 1 leaves the parameters unchanged, 0 copies them.

    Raises:
        ValueError: ``tau`` outside ``[0, 1]``, or the two modules' parameters or buffers differ in
            names or shapes.

    Reference: He et al., arXiv:1911.05722, eq. (2) (MoCo); Grill et al., arXiv:2006.07733,
    eq. (1) (BYOL).
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1], got {tau}")
    params = _matching(
        dict(online.named_parameters()), dict(target.named_parameters()), "parameter"
    )
    buffers = _matching(dict(online.named_buffers()), dict(target.named_buffers()), "buffer")
    for p, t in params:
        t.mul_(tau).add_(p.detach().to(t.dtype), alpha=1.0 - tau)
    for b, t in buffers:
        t.copy_(b)


def _matching(
    online: dict[str, torch.Tensor], target: dict[str, torch.Tensor], kind: str
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(online, target)`` tensor pairs by name; raises ValueError on any name or shape mismatch."""
    if online.keys() != target.keys():
        raise ValueError(
            f"online and target {kind}s differ: only online {sorted(online.keys() - target.keys())}, "
            f"only target {sorted(target.keys() - online.keys())}"
        )
    for name, o in online.items():
        if o.shape != target[name].shape:
            raise ValueError(
                f"{kind} {name!r} has shape {tuple(o.shape)} online but "
                f"{tuple(target[name].shape)} in the target"
            )
    return [(online[name], target[name]) for name in online]


def momentum_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` (e.g. an encoder or projection head) to serve as its momentum
    network: same weights and buffers now, ``requires_grad=False`` on every parameter, so the
    optimiser leaves it alone and only :func:`update_momentum` changes it.

    Args:
        module: The online network.

    Returns:
        The copy (a new module; ``module`` is unchanged).

    Reference: He et al., arXiv:1911.05722, section 3.2 (momentum update); Grill et al.,
    arXiv:2006.07733, section 3.1 (target network).
    """
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


__all__ = ["cosine_momentum", "momentum_copy", "update_momentum"]
