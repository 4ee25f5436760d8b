"""Export variants on the image bundle: onnxruntime graph optimisation and dynamic int8."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from serve_helpers import CheckpointFixture

from ssl_serve.errors import ExportValidationError, InvalidInputError
from ssl_serve.export import export_checkpoint
from ssl_serve.runtime import OnnxEmbedder


def _cosines(path: Path, checkpoint: CheckpointFixture) -> tuple[np.ndarray, np.ndarray]:
    """Row cosines and abs diffs of the stored model.onnx against the PyTorch encoder."""
    x = checkpoint.pixel_values
    (onnx_out,) = ort.InferenceSession(str(path)).run(["embedding"], {"pixel_values": x})
    with torch.no_grad():
        ref = F.normalize(checkpoint.encoder(torch.from_numpy(x)), dim=1).numpy()
    cos = (onnx_out.astype(np.float64) * ref).sum(axis=1) / np.linalg.norm(onnx_out, axis=1)
    return cos, np.abs(onnx_out - ref)


def test_optimized_model_is_stored_with_its_figures(
    tmp_path: Path, checkpoint: CheckpointFixture
) -> None:
    out = tmp_path / "m" / "1"
    v = export_checkpoint(checkpoint.run, out, name="m", optimize=True)["validation"]
    assert v["model"] == "optimized" and "int8" not in v
    opt = v["optimized"]
    assert opt["level"] == "extended" and opt["model_bytes"] == (out / "model.onnx").stat().st_size
    assert opt["max_abs_diff"] <= 1e-4 and opt["min_cosine"] >= 1 - 1e-4
    assert v["fp32_model_bytes"] > 0 and v["max_abs_diff"] <= 1e-4  # the fp32 figures stay
    cos, diff = _cosines(out / "model.onnx", checkpoint)
    assert cos.min() >= 1 - 1e-4 and diff.max() <= 1e-4
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "model.onnx", "recipe.yaml"]
    assert OnnxEmbedder(out / "model.onnx").warm_up().shape == (1, 128)  # the server loads it


def test_int8_then_optimized_is_smaller_and_close(
    tmp_path: Path, checkpoint: CheckpointFixture
) -> None:
    out = tmp_path / "m" / "1"
    export_checkpoint(checkpoint.run, out, name="m", optimize=True, quantize="int8")
    v = json.loads((out / "bundle.json").read_text())["validation"]
    assert v["model"] == "int8+optimized"
    int8, opt = v["int8"], v["optimized"]
    assert (int8["weight_type"], int8["per_channel"], int8["min_cosine_required"]) == (
        "QInt8",
        True,
        0.99,
    )
    assert int8["min_cosine"] >= 0.99 and opt["min_cosine"] >= 0.99
    size = (out / "model.onnx").stat().st_size
    assert size == opt["model_bytes"] and size < v["fp32_model_bytes"] / 2  # int8 conv weights
    cos, diff = _cosines(out / "model.onnx", checkpoint)  # the figures describe model.onnx
    assert cos.min() == pytest.approx(opt["min_cosine"], abs=1e-6)
    assert diff.max() == pytest.approx(opt["max_abs_diff"], abs=1e-6)
    assert diff.max() > 1e-4  # really quantised, not the fp32 model
    assert not [p for p in tmp_path.rglob("*.onnx") if p.name != "model.onnx"]


def test_bad_quantize_mode_and_unreachable_cosine(
    tmp_path: Path, checkpoint: CheckpointFixture
) -> None:
    with pytest.raises(InvalidInputError, match="quantize is 'int4'; supported: \\['int8'\\]"):
        export_checkpoint(checkpoint.run, tmp_path / "a", name="m", quantize="int4")
    with pytest.raises(ExportValidationError, match="int8 model: min_cosine") as info:
        export_checkpoint(
            checkpoint.run, tmp_path / "b", name="m", quantize="int8", int8_min_cosine=0.9999999
        )
    assert 0.99 < info.value.figures["min_cosine"] < 0.9999999
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
