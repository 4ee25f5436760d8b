"""LARS: SGD with momentum and a per-tensor trust ratio, the large-batch optimiser of SimCLR/BYOL."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling.

    For every parameter tensor ``w`` with gradient ``g``, one step is::

        d = g + weight_decay * w
        if lars_adaptation:
            d = d * (trust_coefficient * |w| / |d|)   # 1 when |w| or |d| is 0
        buf = momentum * buf + d                      # buf starts at 0
        w = w - lr * buf

    ``|.|`` is the Frobenius norm of the whole tensor. Each parameter group may set its own
    ``weight_decay`` and ``lars_adaptation``: :func:`ssl_train.optim.build_optimizer` turns both
    off for biases, norm weights and the other parameters that get no weight decay, as SimCLR
    (arXiv:2002.05709, appendix B.1) and BYOL (arXiv:2006.07733, appendix C.1) do.

    The trust ratio divides by the norm of the decayed gradient, as SimCLR's, BYOL's (optax
    ``lars``) and Barlow Twins' implementations do (the paper writes ``|g| + wd*|w|``); the
    learning rate multiplies the momentum buffer, as in ``torch.optim.SGD``, so a schedule
    changes the step at once. The momentum buffer is kept under ``momentum_buffer``, like SGD's.

    Args:
        params: Parameters or parameter groups (dicts with ``params`` and any of the options).
        lr: Learning rate (> 0).
        momentum: Momentum in [0, 1).
        weight_decay: L2 coefficient (>= 0) added to the gradient before the trust ratio.
        trust_coefficient: eta (> 0), 0.001 in the paper and in SimCLR/BYOL.
        lars_adaptation: Apply the trust ratio (False gives SGD with momentum and decay).

    Raises:
        ValueError: A value out of its range (the message names it).

    Reference: You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks",
    arXiv:1708.03888.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        lars_adaptation: bool = True,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if not trust_coefficient > 0:
            raise ValueError(f"trust_coefficient must be > 0, got {trust_coefficient}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
            "lars_adaptation": lars_adaptation,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter that has a gradient.

        Args:
            closure: Re-evaluates the model and returns the loss (optional).

        Returns:
            The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            wd, eta, momentum = group["weight_decay"], group["trust_coefficient"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if wd != 0:
                    d = d.add(p, alpha=wd)
                if group["lars_adaptation"]:
                    w_norm = torch.linalg.vector_norm(p)
                    d_norm = torch.linalg.vector_norm(d)
                    # No host sync: the ratio stays a device tensor (1 where a norm is 0).
                    ratio = torch.where(
                        (w_norm > 0) & (d_norm > 0),
                        eta * w_norm / d_norm.clamp_min(torch.finfo(d_norm.dtype).tiny),
                        torch.ones_like(w_norm),
                    )
                    d = d.mul(ratio)
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = torch.zeros_like(p)
                buf.mul_(momentum).add_(d)
                p.add_(buf, alpha=-group["lr"])
        return loss
