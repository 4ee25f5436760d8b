"""The base of methods with a momentum (EMA) branch: MoCo v2, MoCo v3, BYOL."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ssl_models.methods.base import SSLMethod
from ssl_models.momentum import cosine_momentum, momentum_copy, update_momentum

MomentumSchedule = Literal["cosine", "constant"]


class MomentumSSLMethod(SSLMethod):
    """An :class:`SSLMethod` whose encoder and projection head have momentum copies
    (``momentum_encoder``, ``momentum_projection_head``), updated after every optimiser step.

    Subclasses set ``projection_head`` and then call :meth:`_init_momentum_branch`. The momentum
    networks get no gradient and are not trained by the optimiser (``requires_grad=False``); their
    weights sit under ``momentum_encoder.`` and ``momentum_projection_head.`` in the state dict,
    while :meth:`embed` stays the online encoder's output.

    Args:
        encoder: Backbone with an integer ``output_dim``.
        base_momentum: Momentum tau of the first update, in ``[0, 1]``.
        momentum_schedule: ``"cosine"`` raises tau from ``base_momentum`` to 1 over the run
            (:func:`ssl_models.momentum.cosine_momentum`); ``"constant"`` keeps it.

    Raises:
        ValueError: ``base_momentum`` outside ``[0, 1]``, an unknown ``momentum_schedule``, or
            the encoder has no integer ``output_dim``.
    """

    momentum_encoder: nn.Module
    momentum_projection_head: nn.Module
    projection_head: nn.Module

    def __init__(
        self,
        encoder: nn.Module,
        base_momentum: float,
        momentum_schedule: MomentumSchedule = "cosine",
    ) -> None:
        super().__init__(encoder)
        if not 0.0 <= base_momentum <= 1.0:
            raise ValueError(f"base_momentum must be in [0, 1], got {base_momentum}")
        if momentum_schedule not in ("cosine", "constant"):
            raise ValueError(
                f"momentum_schedule must be 'cosine' or 'constant', got {momentum_schedule!r}"
            )
        self.base_momentum = base_momentum
        self.momentum_schedule = momentum_schedule
        self.momentum = base_momentum

    def _init_momentum_branch(self) -> None:
        self.momentum_encoder = momentum_copy(self.encoder)
        self.momentum_projection_head = momentum_copy(self.projection_head)

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """One EMA update of the momentum networks towards the online ones.

        The update after the k-th optimiser step (``step = k``, 1-based) uses
        ``tau = cosine_momentum(k - 1, total_steps, base_momentum)``: the first update uses the
        base momentum, as in BYOL, and tau reaches 1 at the end of the run.

        Args:
            step: Optimiser steps done, counting this one (1 to ``total_steps``).
            total_steps: Optimiser steps in the whole run.

        Raises:
            ValueError: ``step`` outside ``[1, total_steps]``.
        """
        if not 1 <= step <= total_steps:
            raise ValueError(f"step must be in [1, total_steps={total_steps}], got {step}")
        if self.momentum_schedule == "cosine":
            self.momentum = cosine_momentum(step - 1, total_steps, self.base_momentum)
        update_momentum(self.encoder, self.momentum_encoder, self.momentum)
        update_momentum(self.projection_head, self.momentum_projection_head, self.momentum)

    @torch.no_grad()
    def momentum_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The momentum branch's projection of ``x`` (no gradient): ``(B, projection_dim)``."""
        return self.momentum_projection_head(self.momentum_encoder(x))
