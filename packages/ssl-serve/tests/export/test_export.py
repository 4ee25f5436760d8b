"""Export: ONNX parity with PyTorch on real images, bundle contents, atomic writes, errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from serve_helpers import MODEL_NAME, RECIPE_YAML, CheckpointFixture, write_checkpoint

from ssl_serve.bundle import read_bundle
from ssl_serve.errors import CheckpointError, ExportValidationError, InvalidInputError
from ssl_serve.export import export_checkpoint, resolve_checkpoint_dir


def test_onnx_matches_pytorch_at_a_new_batch_size(
    repository: Path, checkpoint: CheckpointFixture
) -> None:
    # Export traced batch 2 and validated 64/7/1; batch 5 is new to the graph.
    session = ort.InferenceSession(str(repository / MODEL_NAME / "1" / "model.onnx"))
    x = checkpoint.pixel_values[:5]
    (onnx_out,) = session.run(["embedding"], {"pixel_values": x})
    with torch.no_grad():
        torch_out = F.normalize(checkpoint.encoder(torch.from_numpy(x)), dim=1).numpy()
    assert onnx_out.shape == (5, 128)
    assert np.abs(onnx_out - torch_out).max() <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(onnx_out, axis=1), 1.0, atol=1e-5)


def test_bundle_json_describes_the_export(repository: Path, checkpoint: CheckpointFixture) -> None:
    folder = repository / MODEL_NAME / "1"
    assert sorted(p.name for p in folder.iterdir()) == ["bundle.json", "model.onnx", "recipe.yaml"]
    bundle = read_bundle(folder)
    assert (bundle.name, bundle.version, bundle.embedding_dim) == (MODEL_NAME, "1", 128)
    assert bundle.preprocessing.mean == (0.286,) and bundle.preprocessing.std == (0.353,)
    v = bundle.validation
    assert v["batch_sizes"] == [64, 7, 1] and v["num_inputs"] == 64
    assert v["max_abs_diff"] <= 1e-4 and v["min_cosine"] >= 1 - 1e-4
    assert v["preprocessing_max_abs_diff"] <= 1e-6
    recipe = (folder / "recipe.yaml").read_bytes()
    assert recipe == RECIPE_YAML.encode()
    assert bundle.provenance["recipe_sha256"] == hashlib.sha256(recipe).hexdigest()
    assert bundle.provenance["step"] == 10
    assert bundle.provenance["checkpoint"] == "step-00000010"
    versions = bundle.provenance["versions"]
    assert versions["ssl_serve"] == "0.1.0" and versions["torch"] == torch.__version__
    assert versions["opset"] == 17
    assert not [p for p in repository.rglob(".*")]  # no temporary folders left


def test_checkpoint_layouts_resolve_to_the_step_folder(checkpoint: CheckpointFixture) -> None:
    for path in (checkpoint.run, checkpoint.run / "checkpoints", checkpoint.step_dir):
        assert resolve_checkpoint_dir(path) == checkpoint.step_dir
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        resolve_checkpoint_dir(checkpoint.run.parent)


def test_existing_output_needs_overwrite(tmp_path: Path, checkpoint: CheckpointFixture) -> None:
    out = tmp_path / "m" / "1"
    export_checkpoint(checkpoint.step_dir, out, name="m")
    first = (out / "model.onnx").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        export_checkpoint(checkpoint.run, out, name="m")
    bundle = export_checkpoint(checkpoint.run, out, name="m", version="1", overwrite=True)
    assert json.loads((out / "bundle.json").read_text()) == bundle
    assert (out / "model.onnx").read_bytes() == first  # same weights, same graph
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1"]


def test_recipe_preprocessing_mismatch_fails_and_writes_nothing(
    tmp_path: Path, fashion_images: np.ndarray
) -> None:
    # The recipe claims another mean than the one the example pixel_values were made with.
    ckpt = write_checkpoint(
        tmp_path / "run", fashion_images, recipe_yaml=RECIPE_YAML.replace("0.286", "0.5")
    )
    with pytest.raises(ExportValidationError, match="preprocessing_max_abs_diff") as info:
        export_checkpoint(ckpt.run, tmp_path / "repo" / "m" / "1", name="m")
    assert info.value.figures["preprocessing_max_abs_diff"] > 0.5
    assert list((tmp_path / "repo" / "m").iterdir()) == []


def test_weights_that_do_not_fit_the_encoder(tmp_path: Path, fashion_images: np.ndarray) -> None:
    recipe = RECIPE_YAML.replace("  in_channels: 1\n", "  in_channels: 1\n  widths: [8, 16]\n")
    ckpt = write_checkpoint(tmp_path / "run", fashion_images, recipe_yaml=recipe)
    with pytest.raises(CheckpointError, match="does not fit encoder"):
        export_checkpoint(ckpt.run, tmp_path / "out", name="m")


def test_names_must_be_folder_names(tmp_path: Path, checkpoint: CheckpointFixture) -> None:
    with pytest.raises(InvalidInputError, match=r"name '\.\./x'"):
        export_checkpoint(checkpoint.run, tmp_path / "out", name="../x")
