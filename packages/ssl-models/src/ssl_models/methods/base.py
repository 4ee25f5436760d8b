"""The interface every self-supervised method shares, so a trainer needs no per-method code."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SSLMethod(nn.Module):
    """An encoder plus the heads and objective of one self-supervised method.

    Subclasses set :attr:`num_views` and implement :meth:`training_loss`. The encoder is always
    the ``encoder`` attribute, so its weights sit under the ``encoder.`` prefix of the state dict
    (the export reads them from there).

    Args:
        encoder: Backbone with an ``output_dim`` attribute mapping inputs to ``(B, output_dim)``.

    Raises:
        ValueError: The encoder has no integer ``output_dim``.
    """

    num_views: int = 2

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        dim = getattr(encoder, "output_dim", None)
        if not isinstance(dim, int):
            raise ValueError(f"encoder {type(encoder).__name__} has no integer output_dim")
        self.encoder = encoder
        self.embedding_dim = dim

    def training_loss(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """The objective on a batch of views.

        Args:
            views: ``num_views`` tensors, each ``(B, ...)``, the i-th row of every view coming
                from the same sample.

        Returns:
            Scalar float32 loss.
        """
        raise NotImplementedError

    def forward(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """Same as :meth:`training_loss`; lets DistributedDataParallel wrap the method."""
        return self.training_loss(views)

    def before_optimizer_step(self, step: int, total_steps: int) -> None:
        """Called by the trainer after backward (and gradient clipping), before the optimiser step
        (e.g. to drop the gradients of parameters frozen early in training).

        Args:
            step: The optimiser step about to be taken (1-based).
            total_steps: Optimiser steps in the whole run.
        """

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Called by the trainer after every optimiser step (momentum/EMA updates, schedules).

        Args:
            step: Optimiser steps done so far, counting this one (1-based).
            total_steps: Optimiser steps in the whole run (gradient accumulation and world size
                already accounted for), so schedules reach their end value at ``total_steps``.
        """

    def training_diagnostics(self) -> dict[str, float]:
        """Scalars of the last :meth:`training_loss` call that the trainer logs beside the loss
        (e.g. wav2vec 2.0's codebook perplexity); none by default.

        Returns:
            Name -> value; names are ``metrics.jsonl`` keys, so they must not clash with the
            trainer's own (``loss``, ``lr``, ...).
        """
        return {}

    def collapse_warning(self) -> str | None:
        """A message when the last :meth:`training_loss` call shows a collapse that the loss
        alone hides (e.g. a codebook quantising every frame to one codeword), else None. The
        trainer logs it as a warning, once per run.
        """
        return None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features for downstream use: the encoder's pooled output ``(B, embedding_dim)``."""
        return self.encoder(x)

    def _check_views(self, views: Sequence[torch.Tensor]) -> None:
        if len(views) != self.num_views:
            raise ValueError(
                f"{type(self).__name__} needs {self.num_views} views, got {len(views)}"
            )
