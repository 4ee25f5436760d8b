"""DINO: self-distillation with no labels (Caron et al., 2021, arXiv:2104.14294)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ssl_models.heads.dino_head import DINOHead
from ssl_models.losses.dino_loss import DINOLoss
from ssl_models.methods.base import SSLMethod
from ssl_models.momentum import cosine_momentum, momentum_copy

#: :meth:`DINO.collapse_warning` calls teacher targets uniform from this fraction of ``ln K``.
UNIFORM_COLLAPSE_ENTROPY_FRACTION = 0.98
#: ... and a collapse needs the teacher-student KL at or below this fraction of ``ln K``.
COLLAPSE_KL_FRACTION = 0.01


class DINO(SSLMethod):
    """Student (encoder + DINO head) trained to match a momentum teacher on multi-crop views.

    How the views are read: ``views[0]`` and ``views[1]`` are the two global crops; every further
    view (any number, including none) is a local crop. The teacher sees only the two global
    crops; the student sees all of them. Views of the same shape that follow each other are
    encoded in one pass (DINO's multi-crop wrapper), so global crops (e.g. 224 px) and local crops
    (e.g. 96 px) may differ in size; a ViT encoder interpolates its position embeddings. Each
    student view is compared with each teacher view except the same crop (:class:`DINOLoss`).
    :attr:`num_views` (2) is therefore the minimum number of views.

    The teacher (``teacher_encoder`` + ``teacher_head``) starts as a copy of the student, gets no
    gradients, and follows it by EMA after every optimiser step,
    ``theta_t <- lambda * theta_t + (1 - lambda) * theta_s`` (parameters only: as in the
    official code, the teacher keeps its own batch-norm running statistics), with ``lambda``
    rising from ``momentum`` to 1 on a cosine schedule over the run,
    ``lambda(k) = 1 - (1 - momentum) * (cos(pi k / K) + 1) / 2``
    (:func:`ssl_models.momentum.cosine_momentum`), where k = step - 1 is the 0-based index of the
    step just taken and K = total_steps. ``embed`` (and the export, which reads ``encoder.``)
    use the student's encoder.

    Args:
        encoder: Backbone with ``output_dim`` (ResNet or ViT in the paper).
        output_dim: Prototypes K of the head (65536 in the paper).
        hidden_dim: Head MLP hidden width (2048).
        bottleneck_dim: Head bottleneck width (256).
        use_bn_in_head: Batch norm in the head's MLP (the paper uses it with ResNets).
        norm_last_layer: Fix the head's last-layer weight-norm gain to 1.
        warmup_teacher_temp: Teacher temperature at step 0 (0.04).
        teacher_temp: Teacher temperature after the warm-up (0.04-0.07).
        warmup_teacher_temp_steps: Teacher temperature warm-up in optimiser steps.
        student_temp: Student temperature (0.1).
        center_momentum: Momentum of the teacher centre (0.9).
        momentum: Teacher EMA momentum at the first step (0.996).
        freeze_last_layer_steps: Optimiser steps at the start during which the head's
            weight-normalised last layer gets no update (its gradients are dropped before the
            optimiser step, as the official code does for the first epoch, which stabilises
            training); 0 turns it off.

    Raises:
        ValueError: A momentum outside [0, 1], or a bad head/loss setting (see their classes).

    Reference: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
    arXiv:2104.14294.
    """

    num_views = 2
    num_global_views = 2

    global_step: torch.Tensor

    def __init__(
        self,
        encoder: nn.Module,
        output_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        use_bn_in_head: bool = False,
        norm_last_layer: bool = True,
        warmup_teacher_temp: float = 0.04,
        teacher_temp: float = 0.04,
        warmup_teacher_temp_steps: int = 0,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        momentum: float = 0.996,
        freeze_last_layer_steps: int = 0,
    ) -> None:
        super().__init__(encoder)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if freeze_last_layer_steps < 0:
            raise ValueError(f"freeze_last_layer_steps must be >= 0, got {freeze_last_layer_steps}")
        self.freeze_last_layer_steps = freeze_last_layer_steps
        self.head = DINOHead(
            self.embedding_dim,
            output_dim,
            hidden_dim,
            bottleneck_dim,
            use_bn=use_bn_in_head,
            norm_last_layer=norm_last_layer,
        )
        self.teacher_encoder = momentum_copy(encoder)
        self.teacher_head = momentum_copy(self.head)
        self.criterion = DINOLoss(
            output_dim,
            warmup_teacher_temp=warmup_teacher_temp,
            teacher_temp=teacher_temp,
            warmup_teacher_temp_steps=warmup_teacher_temp_steps,
            student_temp=student_temp,
            center_momentum=center_momentum,
        )
        self.momentum = momentum
        # Saved in the state dict so a resumed run continues the temperature schedule.
        self.register_buffer("global_step", torch.zeros((), dtype=torch.int64))

    def _check_views(self, views: Sequence[torch.Tensor]) -> None:
        if len(views) < self.num_global_views:
            raise ValueError(
                f"DINO needs {self.num_global_views} global views (then any number of local "
                f"views), got {len(views)}"
            )
        g0, g1 = views[0], views[1]
        if g0.shape != g1.shape:
            raise ValueError(
                f"the two global views must have the same shape, got {tuple(g0.shape)} and "
                f"{tuple(g1.shape)}"
            )
        for i, v in enumerate(views):
            if v.shape[0] != g0.shape[0]:
                raise ValueError(
                    f"every view must hold the same {g0.shape[0]} samples, view {i} has "
                    f"{v.shape[0]}"
                )

    def training_loss(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """DINO loss of a multi-crop batch.

        Args:
            views: Two global views ``(B, C, H, W)`` then zero or more local views
                ``(B, C, h, w)`` (float32; the i-th row of every view is the same image).

        Returns:
            Scalar float32 loss (the teacher centre is updated as a side effect).
        """
        self._check_views(views)
        b = views[0].shape[0]
        globals_ = list(views[: self.num_global_views])
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_encoder(torch.cat(globals_)))
        student = self.head(_encode_multicrop(self.encoder, views))
        return self.criterion(
            list(teacher.split(b)), list(student.split(b)), step=int(self.global_step)
        )

    def training_diagnostics(self) -> dict[str, float]:
        """The last batch's ``teacher_entropy``, ``teacher_student_kl`` and
        ``teacher_marginal_entropy`` (nats; see :class:`DINOLoss`); empty before the first."""
        return {k: float(v) for k, v in self.criterion.last_terms.items()}

    def collapse_warning(self) -> str | None:
        """A message for either collapse of the paper's section 5.3 on the last batch, else None.
        Both need the student to have caught up with the teacher (KL from teacher to student at
        most :data:`COLLAPSE_KL_FRACTION` of ``ln K``: 200 steps of the shipped Fashion-MNIST
        recipe stay near uniform targets, up to 0.968 ``ln K``, with the KL at 0.017 ``ln K`` or
        more), and then either uniform targets (teacher entropy at
        least :data:`UNIFORM_COLLAPSE_ENTROPY_FRACTION` of ``ln K``: the loss sits at ``ln K``) or
        one prototype taking the whole batch (batch-averaged teacher distribution of perplexity
        below 2)."""
        terms = self.training_diagnostics()
        k = self.criterion.output_dim
        if not terms or k < 2 or terms["teacher_student_kl"] > COLLAPSE_KL_FRACTION * math.log(k):
            return None
        entropy, kl = terms["teacher_entropy"], terms["teacher_student_kl"]
        if entropy >= UNIFORM_COLLAPSE_ENTROPY_FRACTION * math.log(k):
            return (
                f"DINO uniform collapse: the teacher's targets are near uniform over the {k} "
                f"prototypes (entropy {entropy:.3f} nats, ln K = {math.log(k):.3f}) and the "
                f"student matches them (KL {kl:.4f}); sharpen the teacher (lower "
                f"method.teacher_temp, now {self.criterion.teacher_temp})"
            )
        perplexity = math.exp(terms["teacher_marginal_entropy"])
        if perplexity < 2:
            return (
                f"DINO collapse to one prototype: the batch-averaged teacher distribution has "
                f"perplexity {perplexity:.2f} of {k} prototypes and the student matches it (KL "
                f"{kl:.4f}); centre faster (lower method.center_momentum, now "
                f"{self.criterion.center_momentum}) or raise method.teacher_temp"
            )
        return None

    def momentum_at(self, step: int, total_steps: int) -> float:
        """Teacher EMA momentum used after optimiser step ``step`` (1-based) of ``total_steps``."""
        if total_steps < 1 or not 1 <= step <= total_steps:
            raise ValueError(f"need 1 <= step <= total_steps, got step={step}, {total_steps=}")
        return cosine_momentum(step - 1, total_steps, self.momentum)

    def before_optimizer_step(self, step: int, total_steps: int) -> None:
        """Drop the gradients of the head's last layer during the first
        ``freeze_last_layer_steps`` steps (so neither the update nor weight decay touches it)."""
        if step <= self.freeze_last_layer_steps:
            for p in self.head.last_layer.parameters():
                p.grad = None

    @torch.no_grad()
    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """EMA update of the teacher with :meth:`momentum_at`; records ``step`` for the loss."""
        m = self.momentum_at(step, total_steps)
        for student, teacher in (
            (self.encoder, self.teacher_encoder),
            (self.head, self.teacher_head),
        ):
            for p_t, p_s in zip(teacher.parameters(), student.parameters(), strict=True):
                p_t.mul_(m).add_(p_s.detach(), alpha=1.0 - m)
        self.global_step.fill_(step)


def _encode_multicrop(encoder: nn.Module, views: Sequence[torch.Tensor]) -> torch.Tensor:
    """Encode the views in order, one pass per run of consecutive same-shaped views.

    Returns ``(V * B, D)`` features, view-major (rows ``v*B:(v+1)*B`` are view v).
    """
    outputs: list[torch.Tensor] = []
    start = 0
    for end in range(1, len(views) + 1):
        if end == len(views) or views[end].shape != views[start].shape:
            outputs.append(encoder(torch.cat(list(views[start:end]))))
            start = end
    return torch.cat(outputs)
