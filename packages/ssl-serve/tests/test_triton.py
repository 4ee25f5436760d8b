"""Triton model-repository export: config.pbtxt parsed by Triton's own ModelConfig message."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from google.protobuf import text_format
from serve_helpers import MODEL_NAME
from tritonclient.grpc import model_config_pb2

from ssl_serve.cli import main
from ssl_serve.errors import BundleError, InvalidInputError
from ssl_serve.triton import export_triton


def _config(path: Path) -> model_config_pb2.ModelConfig:
    # Triton's model_config.proto, as tritonclient ships it; unknown fields would fail to parse.
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_image_bundle_as_a_triton_entry(repository: Path, tmp_path: Path) -> None:
    bundle = repository / MODEL_NAME / "1"
    (entry,) = export_triton(bundle, tmp_path / "triton", max_batch_size=32)
    root = tmp_path / "triton" / MODEL_NAME
    assert entry.config == root / "config.pbtxt" and entry.model == root / "1" / "model.onnx"
    assert sorted(p.name for p in root.iterdir()) == ["1", "config.pbtxt"]
    assert sorted(p.name for p in (root / "1").iterdir()) == ["bundle.json", "model.onnx"]
    assert entry.model.read_bytes() == (bundle / "model.onnx").read_bytes()
    config = _config(entry.config)
    assert (config.name, config.platform, config.max_batch_size) == (
        MODEL_NAME,
        "onnxruntime_onnx",
        32,
    )
    ((name, dtype, dims),) = [(t.name, t.data_type, list(t.dims)) for t in config.input]
    assert (name, dtype, dims) == ("pixel_values", model_config_pb2.TYPE_FP32, [1, 28, 28])
    ((name, dtype, dims),) = [(t.name, t.data_type, list(t.dims)) for t in config.output]
    assert (name, dtype, dims) == ("embedding", model_config_pb2.TYPE_FP32, [128])
    assert config.HasField("dynamic_batching")
    assert config.dynamic_batching.max_queue_delay_microseconds == 1000


def test_repository_export_cli_renames_and_refuses_to_overwrite(
    repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "triton"
    assert main(["triton-export", str(repository), str(out)]) == 0
    assert f"wrote {out / MODEL_NAME / '1' / 'model.onnx'}" in capsys.readouterr().out
    assert main(["triton-export", str(repository), str(out)]) == 1
    assert "exists; pass overwrite=True (--overwrite)" in capsys.readouterr().err
    assert main(["triton-export", str(repository), str(out), "--overwrite"]) == 0
    bundle = repository / MODEL_NAME / "1"
    args = ["triton-export", str(bundle), str(out), "--name", "shirts", "--version", "3"]
    assert main([*args, "--max-batch-size", "8", "--max-queue-delay-us", "0"]) == 0
    config = _config(out / "shirts" / "config.pbtxt")
    assert (config.name, config.max_batch_size) == ("shirts", 8)
    assert config.dynamic_batching.max_queue_delay_microseconds == 0
    assert (out / "shirts" / "3" / "model.onnx").read_bytes() == (
        bundle / "model.onnx"
    ).read_bytes()
    assert not [p for p in out.rglob(".*")]  # no temporary files left


def test_bad_sources_and_versions(repository: Path, tmp_path: Path) -> None:
    bundle = repository / MODEL_NAME / "1"
    with pytest.raises(InvalidInputError, match="version 'v2' of model 'fashion-mnist'"):
        export_triton(bundle, tmp_path / "t", version="v2")
    with pytest.raises(InvalidInputError, match="is a repository"):
        export_triton(repository, tmp_path / "t", name="x")
    with pytest.raises(BundleError, match="holds no bundle.json"):
        export_triton(tmp_path, tmp_path / "t")
    with pytest.raises(InvalidInputError, match="max_batch_size must be >= 1"):
        export_triton(bundle, tmp_path / "t", max_batch_size=0)
    assert not (tmp_path / "t").exists()  # nothing written on a refused export
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    assert [e.version for e in export_triton(copy, tmp_path / "t2")] == ["1"]


def test_export_format_triton_writes_the_validated_bundle_as_a_triton_entry(
    checkpoint, repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "triton"
    args = ["export", str(checkpoint.run), "--name", "shirts", "--version", "2"]
    assert main([*args, "--format", "triton", "--repository", str(out)]) == 0
    assert f"wrote Triton entry {out / 'shirts' / '2' / 'model.onnx'}" in capsys.readouterr().out
    root = out / "shirts"
    assert sorted(p.name for p in root.iterdir()) == ["2", "config.pbtxt"]
    assert sorted(p.name for p in (root / "2").iterdir()) == ["bundle.json", "model.onnx"]
    config = _config(root / "config.pbtxt")
    assert (config.name, config.platform) == ("shirts", "onnxruntime_onnx")
    assert config.HasField("dynamic_batching")
    # The same export as the plain bundle of the same checkpoint: identical graph bytes.
    assert (root / "2" / "model.onnx").read_bytes() == (
        repository / MODEL_NAME / "1" / "model.onnx"
    ).read_bytes()
    # A Triton repository is a folder of entries: --output (one bundle folder) is refused.
    assert main([*args, "--format", "triton", "--output", str(tmp_path / "b")]) == 2
    assert "give --repository DIR" in capsys.readouterr().err
