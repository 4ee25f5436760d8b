"""OnnxEmbedder: chunked runs equal one run; thread defaults; input checks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import MODEL_NAME, CheckpointFixture

from ssl_serve.errors import BundleError, InvalidInputError
from ssl_serve.runtime import OnnxEmbedder, default_intra_op_threads


def test_chunks_of_max_batch_size_equal_one_run(
    repository: Path, checkpoint: CheckpointFixture
) -> None:
    path = repository / MODEL_NAME / "1" / "model.onnx"
    whole = OnnxEmbedder(path, intra_op_threads=1, max_batch_size=64).embed(checkpoint.pixel_values)
    chunked = OnnxEmbedder(path, intra_op_threads=1, max_batch_size=5)
    np.testing.assert_allclose(chunked.embed(checkpoint.pixel_values), whole, atol=1e-6)
    assert chunked.warm_up().shape == (1, 128)
    assert chunked.providers == ["CPUExecutionProvider"]


def test_default_threads_follow_the_affinity_mask() -> None:
    assert default_intra_op_threads() == min(len(os.sched_getaffinity(0)), 8)


def test_bad_batches_and_files(repository: Path, tmp_path: Path) -> None:
    embedder = OnnxEmbedder(repository / MODEL_NAME / "1" / "model.onnx", intra_op_threads=1)
    with pytest.raises(InvalidInputError, match=r"\(N, 1, 28, 28\), got \(2, 3, 28, 28\)"):
        embedder.embed(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(InvalidInputError, match="float32"):
        embedder.embed(np.zeros((2, 1, 28, 28), np.float64))
    with pytest.raises(BundleError, match="does not exist"):
        OnnxEmbedder(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(BundleError, match="onnxruntime cannot load it"):
        OnnxEmbedder(tmp_path / "bad.onnx")
