"""Objectives run in float32 (or float64) even inside an autocast region."""

from __future__ import annotations

import torch


def float32_region(x: torch.Tensor) -> torch.autocast:
    """A context that turns autocast off on ``x``'s device.

    Autocast would run the similarity matmuls in bfloat16/float16: with a temperature of 0.05 a
    cosine error of 2**-8 becomes a logit error of 0.08, and ``exp(1 / 0.05)`` overflows float16.
    Losses :func:`upcast` their inputs inside this region; gradients flow back in the inputs'
    dtype.
    """
    return torch.autocast(device_type=x.device.type, enabled=False)


def upcast(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when it is a narrower float (float16, bfloat16); float64 stays float64."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()
