"""The exported text graph: transformer + pooling over real tokens + L2 normalisation."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from ssl_serve.bundle import POOLING_MODES
from ssl_serve.export.onnx_graph import NORM_EPS, OUTPUT_NAME

# Padded positions get this value before max pooling (sentence-transformers uses the same).
_MASKED_MAX = -1e9


def pool_tokens(
    token_states: torch.Tensor, attention_mask: torch.Tensor, pooling: str
) -> torch.Tensor:
    """Pool token states into one vector per sequence, ignoring padding.

    Args:
        token_states: ``(B, L, H) float32`` last hidden states.
        attention_mask: ``(B, L)`` integer mask, 1 for real tokens, 0 for padding.
        pooling: "mean" (average of real tokens, as sentence-transformers' mean pooling, arXiv
            1908.10084), "cls" (the first token) or "max" (elementwise max over real tokens).

    Returns:
        ``(B, H) float32``.

    Raises:
        ValueError: ``pooling`` is not one of :data:`~ssl_serve.bundle.POOLING_MODES`.
    """
    if pooling == "cls":
        return token_states[:, 0]
    mask = attention_mask.unsqueeze(-1).to(token_states.dtype)
    if pooling == "mean":
        return (token_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    if pooling == "max":
        masked = torch.where(mask > 0, token_states, torch.full_like(token_states, _MASKED_MAX))
        return masked.max(dim=1).values
    raise ValueError(f"pooling must be one of {list(POOLING_MODES)}, got {pooling!r}")


class TextEmbeddingModel(nn.Module):
    """A Hugging Face encoder's pooled, L2-normalised output: what a text bundle serves.

    Args:
        transformer: A Hugging Face encoder (e.g. ``BertModel``) whose output has
            ``last_hidden_state (B, L, H)``; called with keyword arguments (a bare ``BertModel``
            cannot be traced positionally by the legacy exporter).
        pooling: "mean", "cls" or "max" (see :func:`pool_tokens`).
        uses_token_type_ids: Whether ``token_type_ids`` is passed on to the transformer.
        eps: Lower bound on the norm divided by.

    Shape:
        Inputs ``input_ids``, ``attention_mask`` (and ``token_type_ids``) ``(B, L) int64``;
        output ``(B, H) float32`` rows of unit L2 norm.
    """

    def __init__(
        self,
        transformer: nn.Module,
        pooling: str,
        *,
        uses_token_type_ids: bool,
        eps: float = NORM_EPS,
    ) -> None:
        super().__init__()
        if pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {list(POOLING_MODES)}, got {pooling!r}")
        self.transformer = transformer
        self.pooling = pooling
        self.uses_token_type_ids = uses_token_type_ids
        self.eps = eps

    @property
    def input_names(self) -> tuple[str, ...]:
        """Graph input names, in the order :meth:`forward` takes them."""
        names = ("input_ids", "attention_mask")
        return (*names, "token_type_ids") if self.uses_token_type_ids else names

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.uses_token_type_ids:
            kwargs["token_type_ids"] = (
                torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
            )
        states = self.transformer(**kwargs).last_hidden_state
        pooled = pool_tokens(states, attention_mask, self.pooling)
        return F.normalize(pooled, p=2.0, dim=1, eps=self.eps)


def export_text_onnx(
    model: TextEmbeddingModel, example: Sequence[torch.Tensor], path: Path, *, opset: int = 17
) -> None:
    """Export ``model`` in eval mode with dynamic batch and sequence axes, and check the file.

    Uses the legacy exporter (``dynamo=False``), fast and without onnxscript.

    Args:
        model: The text embedding model; put in eval mode here.
        example: ``(b, l) int64`` tensors in the order of ``model.input_names``; the example
            should hold padding, so masking is traced with real values; validate at other
            batch and sequence sizes to prove both axes are dynamic.
        path: The ``.onnx`` file to write (a single file, no external data).
        opset: ONNX opset version.

    Raises:
        onnx.checker.ValidationError: The written model is not valid ONNX.
    """
    export_padded_inputs_onnx(model, example, path, axis="sequence", opset=opset)


def export_padded_inputs_onnx(
    model: torch.nn.Module, example: Sequence[torch.Tensor], path: Path, *, axis: str, opset: int
) -> None:
    """The export shared by text and audio graphs: every input ``(batch, <axis>)`` dynamic, every
    output ``(batch, ...)`` with a dynamic batch axis, legacy exporter, model in eval mode;
    checks the file.

    ``model.input_names`` names the inputs, in the order of ``example``; ``model.output_names``
    (default ``("embedding",)``) the outputs, in the order the model returns them.

    Raises:
        onnx.checker.ValidationError: The written model is not valid ONNX.
    """
    model.eval()
    names = list(model.input_names)  # type: ignore[arg-type]
    outputs = list(getattr(model, "output_names", (OUTPUT_NAME,)))
    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: axis} for name in names}
    axes.update({name: {0: "batch"} for name in outputs})
    with warnings.catch_warnings():
        # Legacy-exporter and tracer warnings (traced shapes become constants): both axes are
        # declared dynamic and the validation runs other sizes to prove it.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            tuple(example),
            str(path),
            dynamo=False,
            input_names=names,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path), full_check=True)
