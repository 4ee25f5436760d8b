"""The exported graph: encoder + L2 normalisation (+ a classifier's softmax), written to ONNX."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from ssl_serve.bundle import PROBABILITIES_OUTPUT

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "embedding"
# A classifier bundle's graph outputs, in order.
CLASSIFIER_OUTPUT_NAMES = (OUTPUT_NAME, PROBABILITIES_OUTPUT)
NORM_EPS = 1e-12


class EmbeddingModel(nn.Module):
    """An encoder's pooled features, L2-normalised: what a bundle serves.

    Args:
        encoder: Maps ``(B, C, H, W) float32`` to pooled ``(B, D) float32`` features and has
            ``output_dim`` = D (``ssl_models.build_encoder``'s contract).
        eps: Lower bound on the norm divided by, so an all-zero feature row stays finite.

    Shape:
        Input ``(B, C, H, W) float32``; output ``(B, D) float32`` rows of unit L2 norm.
    """

    def __init__(self, encoder: nn.Module, eps: float = NORM_EPS) -> None:
        super().__init__()
        self.encoder = encoder
        self.eps = eps
        self.output_dim = int(encoder.output_dim)  # type: ignore[arg-type]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encoder(pixel_values), p=2.0, dim=1, eps=self.eps)


class ClassifierModel(nn.Module):
    """A fine-tuned classifier as served: the L2-normalised embedding and class probabilities.

    The head is one affine map of the encoder's pooled (unnormalised) features, ``logits =
    features @ weight.T + bias``; a parameter-free eval-mode batch norm before it is folded into
    ``weight`` and ``bias`` by :func:`fold_batch_norm`. Softmax runs inside the graph.

    Args:
        encoder: Maps ``(B, C, H, W) float32`` to pooled ``(B, D) float32`` features and has
            ``output_dim`` = D.
        weight: ``(K, D) float32`` head weight (batch norm folded in).
        bias: ``(K,) float32`` head bias.
        eps: Lower bound on the norm divided by in the embedding.

    Shape:
        Input ``(B, C, H, W) float32``; outputs ``(B, D) float32`` unit-norm embeddings and
        ``(B, K) float32`` probabilities (rows sum to 1).

    Raises:
        ValueError: ``weight`` is not ``(K, D)`` with K >= 2, or ``bias`` is not ``(K,)``.
    """

    def __init__(
        self, encoder: nn.Module, weight: torch.Tensor, bias: torch.Tensor, eps: float = NORM_EPS
    ) -> None:
        super().__init__()
        dim = int(encoder.output_dim)  # type: ignore[arg-type]
        if weight.ndim != 2 or weight.shape[1] != dim or weight.shape[0] < 2:
            raise ValueError(f"head weight must be (K >= 2, {dim}), got {tuple(weight.shape)}")
        if tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"head bias must be ({weight.shape[0]},), got {tuple(bias.shape)}")
        self.encoder = encoder
        self.eps = eps
        self.output_dim = dim
        self.num_classes = int(weight.shape[0])
        self.head = nn.Linear(dim, self.num_classes)
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(pixel_values)
        embedding = F.normalize(features, p=2.0, dim=1, eps=self.eps)
        return embedding, torch.softmax(self.head(features), dim=1)


def fold_batch_norm(
    weight: torch.Tensor,
    bias: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold a parameter-free eval-mode batch norm into the linear layer after it.

    ``W (f - mu) / sqrt(var + eps) + b = (W / s) f + (b - (W / s) mu)`` with ``s = sqrt(var +
    eps)`` per feature; computed in float64, returned as float32.

    Args:
        weight: ``(K, D)`` linear weight.
        bias: ``(K,)`` linear bias.
        running_mean: ``(D,)`` batch-norm running mean; None when there is no batch norm.
        running_var: ``(D,)`` batch-norm running variance; None when there is no batch norm.
        eps: The batch norm's epsilon.

    Returns:
        The folded ``(K, D)`` weight and ``(K,)`` bias, float32.

    Reference: Ioffe & Szegedy, "Batch Normalization", arXiv:1502.03167 (inference form).
    """
    if running_mean is None or running_var is None:
        return weight.float(), bias.float()
    scaled = weight.double() / torch.sqrt(running_var.double() + eps)[None, :]
    return scaled.float(), (bias.double() - scaled @ running_mean.double()).float()


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    *,
    opset: int = 17,
    output_names: tuple[str, ...] = (OUTPUT_NAME,),
) -> None:
    """Export ``model`` in eval mode with a dynamic batch axis and check the file.

    Uses the legacy TorchScript-based exporter (``dynamo=False``): it is fast and needs no
    onnxscript, and the small CNN encoders here trace without data-dependent control flow.

    Args:
        model: Maps ``(B, C, H, W) float32`` to ``(B, D) float32``; put in eval mode here.
        example: ``(b, C, H, W) float32`` input traced at export; validate at other batch
            sizes to prove the batch axis is dynamic.
        path: The ``.onnx`` file to write (a single file, no external data).
        opset: ONNX opset version.
        output_names: Names of the model's outputs, in order: ``("embedding",)``, or
            ``("embedding", "probabilities")`` for a :class:`ClassifierModel`.

    Raises:
        onnx.checker.ValidationError: The written model is not valid ONNX.
    """
    model.eval()
    with warnings.catch_warnings():
        # The legacy exporter warns that it is legacy and that traced shapes become constants;
        # the batch axis is declared dynamic below and the validation step proves it.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=list(output_names),
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in output_names}},
            opset_version=opset,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path), full_check=True)
