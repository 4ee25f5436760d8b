"""CLIP's symmetric InfoNCE between two modalities, with a learned, clamped temperature."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ssl_models import distributed
from ssl_models.losses._precision import float32_region, upcast


class CLIPLoss(nn.Module):
    """Symmetric InfoNCE over a batch of N pairs: pair i's embedding in modality A must pick
    pair i's embedding in modality B among all N (and the other way round).

    With ``a = normalize(z_a)``, ``b = normalize(z_b)`` and ``s = exp(logit_scale)`` clamped at
    ``max_logit_scale``, the logits are ``s * a @ b.T`` and the loss is the mean of the
    row-wise (A -> B) and column-wise (B -> A) cross-entropies with the diagonal as targets.
    ``logit_scale`` is a learned scalar, log-parameterised (the inverse temperature 1/tau),
    initialised to ``log(1 / init_temperature)``. The clamp applies in the forward pass (a
    clamped scale gets no gradient) and :meth:`clamp_` also pulls the stored parameter back
    (call it after each optimiser step; :class:`~ssl_models.cross_modal.clip.CLIP` does).
    Computed in float32 (float64 stays float64), autocast disabled.

    With ``gather_distributed=True`` the N pairs are the global batch: each rank's B local rows
    of A are scored against the N rows of B gathered from all ranks (and vice versa); local row
    i's positive is global row ``i + rank * B``. Each rank returns the mean over its own rows, so
    the mean over ranks is the single-process loss on the global batch and DDP's averaged
    gradients equal single-process ones (see :mod:`ssl_models.distributed`).

    Args:
        init_temperature: tau at initialisation (> 0; CLIP: 0.07).
        max_logit_scale: Clamp of ``exp(logit_scale)`` (CLIP: 100, i.e. tau >= 0.01).
        learnable_temperature: Whether ``logit_scale`` is a trained parameter.
        gather_distributed: Take negatives from all ranks when ``torch.distributed`` is
            initialised (no effect otherwise).

    Shape:
        ``z_a``, ``z_b``: ``(B, D)`` float (any float dtype; computed in float32), B >= 1, the
        same B on every rank. Output: scalar float32.

    Raises:
        ValueError: A non-positive temperature or clamp, an initial scale above the clamp, or
            shapes that differ / are not 2-D.

    Reference: Radford et al., "Learning Transferable Visual Models From Natural Language
    Supervision", arXiv:2103.00020, figure 3; the symmetric loss of Zhang et al., ConVIRT,
    arXiv:2010.00747.
    """

    def __init__(
        self,
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        learnable_temperature: bool = True,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        if init_temperature <= 0 or max_logit_scale <= 0:
            raise ValueError(
                f"init_temperature and max_logit_scale must be > 0, got {init_temperature}, "
                f"{max_logit_scale}"
            )
        if 1.0 / init_temperature > max_logit_scale:
            raise ValueError(
                f"1 / init_temperature = {1.0 / init_temperature:g} exceeds max_logit_scale = "
                f"{max_logit_scale:g}"
            )
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(1.0 / init_temperature)), requires_grad=learnable_temperature
        )
        self.max_logit_scale = max_logit_scale
        self.gather_distributed = gather_distributed

    def scale(self) -> torch.Tensor:
        """``exp(logit_scale)`` clamped at ``max_logit_scale``: the inverse temperature, scalar
        float32."""
        return self.logit_scale.clamp(max=math.log(self.max_logit_scale)).exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp the stored ``logit_scale`` to ``[0, log(max_logit_scale)]`` in place (as CLIP's
        training code does after every step), so the optimiser's state cannot drift past it."""
        self.logit_scale.clamp_(0.0, math.log(self.max_logit_scale))

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        if z_a.ndim != 2 or z_a.shape != z_b.shape or z_a.shape[0] < 1:
            raise ValueError(
                f"z_a and z_b must both be (B, D) with B >= 1, got {tuple(z_a.shape)} and "
                f"{tuple(z_b.shape)}"
            )
        with float32_region(z_a):
            a = F.normalize(upcast(z_a), dim=1)
            b = F.normalize(upcast(z_b), dim=1)
            all_a, all_b, offset = a, b, 0
            if self.gather_distributed and distributed.world_size() > 1:
                all_a, all_b = distributed.gather(a), distributed.gather(b)
                offset = distributed.rank() * a.shape[0]
            s = self.scale().to(a.dtype)
            targets = torch.arange(a.shape[0], device=a.device) + offset
            loss_ab = F.cross_entropy(s * a @ all_b.T, targets)
            loss_ba = F.cross_entropy(s * b @ all_a.T, targets)
            return (loss_ab + loss_ba) / 2


__all__ = ["CLIPLoss"]
