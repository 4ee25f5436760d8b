"""Run every script in examples/ in its --fast mode, in a subprocess, and check its numbers.

The client examples share one exported all-MiniLM-L6-v2 repository (``--repository``), so the
~30 s export runs once. Each example prints a JSON summary as its last line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TESTED = {
    "images_pretrain_serve.py",
    "text_pretrain.py",
    "speech_views.py",
    "client_python.py",
    "client_tritonclient.py",
    "client_grpc_stub.py",
    "onnx_only_app.py",
}
FAST_TEXTS = 16  # quotes the client examples embed with --fast


def _serving():
    """examples/_serving.py, loaded by path (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("examples_serving", EXAMPLES / "_serving.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(name: str, *args: str, timeout: float = 240) -> dict:
    """Run ``examples/<name> --fast ARGS``; return its JSON summary (the last stdout line)."""
    env = {**os.environ, "EXAMPLES_QUIET_SERVER": "1"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--fast", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def minilm_repository(tmp_path_factory) -> Path:
    repository = tmp_path_factory.mktemp("examples_repository")
    _serving().ensure_minilm(repository)
    return repository


@pytest.fixture(scope="session")
def python_client(minilm_repository, tmp_path_factory) -> tuple[dict, np.ndarray]:
    """client_python.py's summary and the served embeddings it saved."""
    out = tmp_path_factory.mktemp("client_python") / "served.npy"
    summary = run_example(
        "client_python.py", "--repository", str(minilm_repository), "--save", str(out)
    )
    return summary, np.load(out)


def test_every_example_is_run_here_and_documented():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == TESTED
    readme = (EXAMPLES / "README.md").read_text()
    for name in scripts:
        assert f"examples/{name}" in readme, f"{name} is not in examples/README.md"
        assert "--fast" in (EXAMPLES / name).read_text()


def test_images_pretrain_serve():
    s = run_example("images_pretrain_serve.py")
    assert s["steps"] == 8
    assert s["served_shape"] == [300, 128] and s["embedding_dim"] == 128
    assert s["max_norm_error"] < 1e-5
    assert s["export_max_abs_diff"] <= 1e-4
    # A PNG re-encoded by Pillow decodes to the same pixels: the same embedding.
    assert s["single_png_max_abs_diff"] <= 1e-6
    # Served embeddings equal the in-process ones (1e-5), so kNN agrees up to rare near-ties;
    # 10 classes: chance is 0.1, a random-init CNN ~0.7 on the full set.
    assert abs(s["knn_top1_served"] - s["knn_top1_in_process"]) <= 2 / 300
    assert s["knn_top1_served"] > 0.5
    assert s["classes"] == sorted(s["classes"]) and "T-shirt_top" in s["classes"]
    assert len(s["classes"]) == 10 and s["images"] == [1000, 300]


def test_text_pretrain():
    s = run_example("text_pretrain.py")
    v = s["vocab_size"]
    assert 3000 < v <= 4000
    # At random init the MLM head is near uniform: loss ~ ln V; training must beat it clearly.
    assert abs(s["held_out_loss_before"] - np.log(v)) < 0.5
    assert s["held_out_loss_after"] < s["held_out_loss_before"] - 0.5
    assert s["embedding_shape"] == [256, 128]
    assert s["padding_max_abs_diff"] < 1e-5


def test_speech_views():
    s = run_example("speech_views.py")
    assert s["clips"] >= 30  # bundled sample or Debian's recordings, plus espeak-ng digits
    assert s["views_reproducible"] is True and s["views_max_abs_diff"] > 0.01
    # 1 s at 16 kHz through wav2vec 2.0's strides: (16000 - 400) // 320 + 1 = 49 frames.
    assert s["mask_shape"] == [4, 49]
    assert 0.2 < s["mask_fraction"] < 0.8
    assert s["held_out_loss_after"] < s["held_out_loss_before"]
    assert s["embedding_shape"][1] == 64 and s["padding_max_abs_diff"] < 1e-5


def test_client_python_matches_sentence_transformers(python_client, minilm_repository):
    summary, served = python_client
    assert summary["shape"] == [FAST_TEXTS, 384] and summary["dtype"] == "float32"
    assert summary["not_found_code"] == "NOT_FOUND"
    assert summary["max_norm_error"] < 1e-5
    # Independent reference: the same model in PyTorch through sentence-transformers.
    sentence_transformers = pytest.importorskip("sentence_transformers")
    serving = _serving()
    model = sentence_transformers.SentenceTransformer(str(serving.minilm_folder()), device="cpu")
    texts = serving.real_texts(FAST_TEXTS)
    reference = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(served, reference, atol=1e-5)
    tokens = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
    assert summary["tokens"] == sum(len(t) for t in tokens)
    assert summary["truncated"] == sum(len(model.tokenizer(t)["input_ids"]) > 256 for t in texts)


def test_client_tritonclient(python_client, minilm_repository, tmp_path):
    s = run_example(
        "client_tritonclient.py", "--repository", str(minilm_repository),
        "--save", str(tmp_path / "e.npy"),
    )  # fmt: skip
    assert s["live"] is True and s["ready"] is True and s["server"] == "ssl-serve"
    assert s["inputs"]["input_ids"] == ["INT64", [-1, -1]]
    assert s["outputs"] == {"embedding": ["FP32", [-1, 384]]}
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), python_client[1], atol=1e-5)


def test_client_grpc_stub(python_client, minilm_repository, tmp_path):
    s = run_example(
        "client_grpc_stub.py", "--repository", str(minilm_repository),
        "--save", str(tmp_path / "e.npy"),
    )  # fmt: skip
    assert s["ssl_serve_imported"] is False
    assert s["models"] == ["minilm"] and s["embedding_dim"] == 384
    assert s["request_id"] == "example-grpc-stub"
    assert s["empty_request_code"] == "INVALID_ARGUMENT"
    assert s["tokens"] == python_client[0]["tokens"]
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), python_client[1], atol=1e-5)


def test_onnx_only_app_equals_served(python_client, minilm_repository, tmp_path):
    with _serving().serve(minilm_repository) as target:
        s = run_example(
            "onnx_only_app.py", "--bundle", str(minilm_repository / "minilm" / "1"),
            "--server", target, "--save", str(tmp_path / "e.npy"),
        )  # fmt: skip
    assert s["ssl_imported"] == []
    assert s["shape"] == [FAST_TEXTS, 384]
    assert s["served_max_abs_diff"] <= 1e-5
    assert s["padding_max_abs_diff"] <= 1e-5
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), python_client[1], atol=1e-5)
