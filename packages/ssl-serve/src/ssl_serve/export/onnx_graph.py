"""The exported graph: encoder + L2 normalisation, written to ONNX by the legacy exporter."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import nn

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "embedding"
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


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, *, opset: int = 17) -> None:
    """Export ``model`` in eval mode with a dynamic batch axis and check the file.

    Uses the legacy TorchScript-based exporter (``dynamo=False``): it is fast and needs no
    onnxscript, and the small CNN encoders here trace without data-dependent control flow.

    Args:
        model: Maps ``(B, C, H, W) float32`` to ``(B, D) float32``; put in eval mode here.
        example: ``(b, C, H, W) float32`` input traced at export; validate at other batch
            sizes to prove the batch axis is dynamic.
        path: The ``.onnx`` file to write (a single file, no external data).
        opset: ONNX opset version.

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
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path), full_check=True)
