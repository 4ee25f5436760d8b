"""DINO's self-distillation loss: cross-entropy from centred, sharpened teacher outputs to the
student's, over every (global teacher view, other student view) pair."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ssl_models.distributed import is_distributed, world_size
from ssl_models.losses._precision import float32_region, upcast


class DINOLoss(nn.Module):
    """Cross-entropy between teacher and student distributions over K prototypes.

    For teacher outputs ``t_i`` (global views i) and student outputs ``s_v`` (all views v):

    - teacher targets ``P_t,i = softmax((t_i - c) / tau_t)``, no gradient (centring and
      sharpening; c is the running centre);
    - student ``log P_s,v = log_softmax(s_v / tau_s)``;
    - loss = mean over the pairs (i, v) with ``v != i`` of ``mean_b sum_k -P_t,i[b,k] log P_s,v[b,k]``.

    View i of the teacher and view i of the student must be the same crop, so the teacher's
    views are the first ones of the student's list (DINO passes the global crops first).

    After each forward the centre follows its EMA exactly:
    ``c <- m * c + (1 - m) * mean_b(t)``, the mean over every teacher row of the batch (all global
    views), and over every rank when ``torch.distributed`` is initialised (the per-rank sums are
    all-reduced before dividing by the global row count). ``c`` is a registered buffer, so it
    follows ``.to(device/dtype)`` and is saved in the state dict.

    Collapse monitor (the paper's section 5.3 and Figure 7): after each forward,
    :attr:`last_terms` holds detached scalars of this rank's batch: ``teacher_entropy``, the mean
    entropy of the teacher targets ``P_t`` (nats; ``ln K`` when they are uniform),
    ``teacher_student_kl`` = loss - ``teacher_entropy``, the mean KL from ``P_t`` to the student
    (0 when the student has nothing left to learn: both collapses), and
    ``teacher_marginal_entropy``, the entropy of ``P_t`` averaged over the batch (about 0 when
    one prototype takes every image).

    The teacher temperature warms up linearly, in optimiser steps:
    ``tau_t(step) = warmup_teacher_temp + (teacher_temp - warmup_teacher_temp) * step /
    warmup_teacher_temp_steps`` for ``step < warmup_teacher_temp_steps``, ``teacher_temp`` after.

    Args:
        output_dim: Number of prototypes K (the head's output width).
        warmup_teacher_temp: Teacher temperature at step 0 (0.04 in the paper).
        teacher_temp: Teacher temperature after the warm-up (0.04-0.07 in the paper).
        warmup_teacher_temp_steps: Length of the warm-up in optimiser steps (the paper warms up
            over 30 epochs); 0 disables it.
        student_temp: Student temperature (0.1 in the paper).
        center_momentum: Momentum m of the centre's EMA (0.9 in the paper).

    Shape:
        ``teacher_out``: G tensors ``(B, K)`` (float, any float dtype; computed in float32, or
        float64 for float64 inputs, with autocast off).
        ``student_out``: V >= G tensors ``(B, K)``; the first G are the same views as the teacher's.
        Output: scalar float32 (float64 for float64 inputs).

    Raises:
        ValueError: Non-positive temperatures, a momentum outside [0, 1), a negative warm-up, or
            inputs of the wrong number or shape (the message names them).

    Reference: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
    arXiv:2104.14294, Algorithm 1 and section 3.1.
    """

    center: torch.Tensor

    def __init__(
        self,
        output_dim: int,
        warmup_teacher_temp: float = 0.04,
        teacher_temp: float = 0.04,
        warmup_teacher_temp_steps: int = 0,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
    ) -> None:
        super().__init__()
        if output_dim < 1:
            raise ValueError(f"output_dim must be >= 1, got {output_dim}")
        if min(warmup_teacher_temp, teacher_temp, student_temp) <= 0:
            raise ValueError(
                f"temperatures must be > 0, got warmup_teacher_temp={warmup_teacher_temp}, "
                f"teacher_temp={teacher_temp}, student_temp={student_temp}"
            )
        if not 0.0 <= center_momentum < 1.0:
            raise ValueError(f"center_momentum must be in [0, 1), got {center_momentum}")
        if warmup_teacher_temp_steps < 0:
            raise ValueError(
                f"warmup_teacher_temp_steps must be >= 0, got {warmup_teacher_temp_steps}"
            )
        self.output_dim = output_dim
        self.warmup_teacher_temp = warmup_teacher_temp
        self.teacher_temp = teacher_temp
        self.warmup_teacher_temp_steps = warmup_teacher_temp_steps
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, output_dim))
        self.last_terms: dict[str, torch.Tensor] = {}

    def teacher_temperature(self, step: int) -> float:
        """Teacher temperature after ``step`` optimiser steps (linear warm-up, then constant)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if step >= self.warmup_teacher_temp_steps:
            return self.teacher_temp
        frac = step / self.warmup_teacher_temp_steps
        return self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * frac

    def forward(
        self,
        teacher_out: Sequence[torch.Tensor],
        student_out: Sequence[torch.Tensor],
        step: int = 0,
    ) -> torch.Tensor:
        """The loss for one batch; also updates the centre (once, from all teacher views).

        Args:
            teacher_out: G teacher outputs ``(B, K)``, one per global view.
            student_out: V student outputs ``(B, K)``, the first G for the same global views.
            step: Optimiser steps done so far (selects the teacher temperature).

        Returns:
            Scalar float32 loss.
        """
        self._check(teacher_out, student_out)
        tau_t = self.teacher_temperature(step)
        with float32_region(student_out[0]):
            center = upcast(self.center)
            targets = [
                F.softmax((upcast(t.detach()) - center) / tau_t, dim=-1) for t in teacher_out
            ]
            log_probs = [F.log_softmax(upcast(s) / self.student_temp, dim=-1) for s in student_out]
            terms = [
                torch.sum(-p_t * log_p_s, dim=-1).mean()
                for i, p_t in enumerate(targets)
                for v, log_p_s in enumerate(log_probs)
                if v != i
            ]
            loss = torch.stack(terms).mean()
            with torch.no_grad():
                probs = torch.cat(targets)
                entropy = -torch.xlogy(probs, probs).sum(dim=-1).mean()
                mean = probs.mean(dim=0)
                self.last_terms = {
                    "teacher_entropy": entropy,
                    "teacher_student_kl": loss.detach() - entropy,
                    "teacher_marginal_entropy": -torch.xlogy(mean, mean).sum(),
                }
        self.update_center(torch.cat([t.detach() for t in teacher_out]))
        return loss

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        """``c <- m * c + (1 - m) * mean(teacher_out)`` over all rows (and all ranks).

        Args:
            teacher_out: ``(N, K)`` teacher outputs (all global views of the batch).
        """
        batch_sum = teacher_out.to(self.center.dtype).sum(dim=0, keepdim=True)
        if is_distributed():
            dist.all_reduce(batch_sum)
        batch_center = batch_sum / (teacher_out.shape[0] * world_size())
        m = self.center_momentum
        self.center.copy_(self.center * m + batch_center * (1 - m))

    def _check(
        self, teacher_out: Sequence[torch.Tensor], student_out: Sequence[torch.Tensor]
    ) -> None:
        g, v = len(teacher_out), len(student_out)
        if g < 1 or v < 2 or v < g:
            raise ValueError(
                f"need >= 1 teacher views and >= max(2, teacher views) student views, got "
                f"{g} teacher and {v} student views"
            )
        shape = tuple(teacher_out[0].shape)
        for name, outs in (("teacher_out", teacher_out), ("student_out", student_out)):
            for k, out in enumerate(outs):
                if out.ndim != 2 or out.shape[1] != self.output_dim or out.shape[0] != shape[0]:
                    raise ValueError(
                        f"{name}[{k}] must be (B, {self.output_dim}) with B={shape[0]}, got "
                        f"{tuple(out.shape)}"
                    )
