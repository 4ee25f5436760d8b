"""CLIP-style contrastive pretraining of two encoders on paired data (Radford et al., 2021,
arXiv:2103.00020)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl_models.losses.clip import CLIPLoss
from ssl_models.methods.base import SSLMethod


class CLIP(SSLMethod):
    """Two encoders, one per modality, each followed by a linear projection into a shared
    space, trained with the symmetric InfoNCE of :class:`~ssl_models.losses.clip.CLIPLoss`
    (learned temperature, clamped) on a batch of pairs, e.g. spoken words and their text.

    Each encoder maps its inputs to pooled ``(B, output_dim)`` features (a
    :class:`~ssl_models.speech.encoder.SpeechEncoder` takes ``(input_values, lengths)``; a text
    encoder with pooling takes e.g. ``(input_ids, attention_mask)``). The first encoder is the
    ``encoder`` attribute (``encoder.`` prefix of the state dict, the one the export reads by
    default), the second ``encoder_b``.

    Batch contract (``views``): the first modality's ``num_inputs[0]`` tensors, then the second
    modality's ``num_inputs[1]`` tensors, all with the same B (row i of both is pair i).

    Args:
        encoder: The first modality's encoder (with ``output_dim``).
        encoder_b: The second modality's encoder, or its config for
            :func:`~ssl_models.encoders.build_encoder` (``{"name": ..., **kwargs}``).
        modalities: Names of the two modalities, used by :meth:`embed`.
        num_inputs: How many of the views each encoder takes.
        projection_dim: Width of the shared embedding space.
        init_temperature: Initial tau (0.07).
        max_logit_scale: Clamp of the inverse temperature (100).
        gather_distributed: Negatives from all ranks under ``torch.distributed``.

    Raises:
        ValueError: ``encoder_b`` has no integer ``output_dim``, the modality names are not two
            distinct strings, or ``num_inputs`` holds a count < 1.

    Reference: Radford et al., "Learning Transferable Visual Models From Natural Language
    Supervision", arXiv:2103.00020.
    """

    def __init__(
        self,
        encoder: nn.Module,
        encoder_b: nn.Module | Mapping[str, Any],
        modalities: Sequence[str] = ("speech", "text"),
        num_inputs: Sequence[int] = (2, 2),
        projection_dim: int = 256,
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(encoder)
        if isinstance(encoder_b, Mapping):
            # imported here: the encoder registry imports the speech encoder, and the method
            # registry imports this module
            from ssl_models.encoders import build_encoder

            encoder_b = build_encoder(encoder_b)
        dim_b = getattr(encoder_b, "output_dim", None)
        if not isinstance(dim_b, int):
            raise ValueError(f"encoder_b {type(encoder_b).__name__} has no integer output_dim")
        if len(modalities) != 2 or modalities[0] == modalities[1]:
            raise ValueError(f"modalities must be two distinct names, got {tuple(modalities)}")
        if len(num_inputs) != 2 or min(num_inputs) < 1:
            raise ValueError(f"num_inputs must be two counts >= 1, got {tuple(num_inputs)}")
        self.encoder_b = encoder_b
        self.modalities = (str(modalities[0]), str(modalities[1]))
        self.num_inputs = (int(num_inputs[0]), int(num_inputs[1]))
        self.num_views = sum(self.num_inputs)
        self.projection = nn.Linear(self.embedding_dim, projection_dim, bias=False)
        self.projection_b = nn.Linear(dim_b, projection_dim, bias=False)
        self.criterion = CLIPLoss(
            init_temperature, max_logit_scale, gather_distributed=gather_distributed
        )

    def _branch(self, modality: str) -> tuple[nn.Module, nn.Module, int]:
        if modality == self.modalities[0]:
            return self.encoder, self.projection, self.num_inputs[0]
        if modality == self.modalities[1]:
            return self.encoder_b, self.projection_b, self.num_inputs[1]
        raise ValueError(f"unknown modality {modality!r}; known: {list(self.modalities)}")

    def training_loss(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """Symmetric InfoNCE of the projected pairs.

        Args:
            views: ``num_inputs[0]`` tensors of the first modality, then ``num_inputs[1]`` of
                the second, all ``(B, ...)``.

        Returns:
            Scalar float32 loss.

        Raises:
            ValueError: Wrong number of views, or the two modalities' batch sizes differ.
        """
        self._check_views(views)
        k = self.num_inputs[0]
        z_a = self.projection(self.encoder(*views[:k]))
        z_b = self.projection_b(self.encoder_b(*views[k:]))
        if z_a.shape[0] != z_b.shape[0]:
            raise ValueError(
                f"the modalities' batch sizes differ: {z_a.shape[0]} and {z_b.shape[0]}"
            )
        return self.criterion(z_a, z_b)

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Clamp the learned temperature's parameter into ``[0, log(max_logit_scale)]``."""
        self.criterion.clamp_()

    def embed(
        self, x: torch.Tensor | str, *inputs: torch.Tensor, projected: bool = False
    ) -> torch.Tensor:
        """Embeddings of one modality: ``embed("text", ids, mask)`` or, for the first modality,
        ``embed(x, ...)`` as every method's ``embed``.

        Args:
            x: The modality's name, or the first modality's first input.
            *inputs: The (remaining) inputs of that modality's encoder; trailing optional ones
                (e.g. a speech encoder's ``lengths``) may be left out.
            projected: False: the encoder's pooled output ``(B, output_dim)`` (what the export
                serves); True: the L2-normalised joint-space embedding ``(B, projection_dim)``
                the two modalities are compared in (retrieval, zero-shot).

        Returns:
            ``(B, output_dim)`` or ``(B, projection_dim)`` float32.

        Raises:
            ValueError: An unknown modality, or more inputs than the modality takes.
        """
        if isinstance(x, str):
            modality, args = x, inputs
        else:
            modality, args = self.modalities[0], (x, *inputs)
        encoder, projection, count = self._branch(modality)
        if not 1 <= len(args) <= count:
            raise ValueError(f"modality {modality!r} takes 1 to {count} inputs, got {len(args)}")
        pooled = encoder(*args)
        return F.normalize(projection(pooled), dim=-1) if projected else pooled


__all__ = ["CLIP"]
