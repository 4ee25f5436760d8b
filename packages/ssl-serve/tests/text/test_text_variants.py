"""Dynamic int8 (+ graph optimisation) on the real all-MiniLM-L6-v2, against its fp32 bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ssl_serve.preprocess.text import TextTokenizer
from ssl_serve.runtime import OnnxTextEmbedder

TEXT_MODEL = "minilm"


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    from ssl_serve.export import export_hf_model

    out = tmp_path_factory.mktemp("int8") / TEXT_MODEL / "1"
    export_hf_model(minilm_dir, out, name=TEXT_MODEL, quantize="int8", optimize=True)
    return out


def _embed(folder: Path, texts: list[str]) -> np.ndarray:
    tokens = TextTokenizer(folder / "tokenizer.json", 256).tokenize(texts)
    names = [s["name"] for s in json.loads((folder / "bundle.json").read_text())["inputs"]]
    embedder = OnnxTextEmbedder(folder / "model.onnx", input_names=names, intra_op_threads=1)
    return embedder.embed(tokens.ids, tokens.type_ids)


def test_int8_figures_size_and_held_out_agreement(
    int8_bundle: Path, text_repository: Path, sentences: list[str]
) -> None:
    v = json.loads((int8_bundle / "bundle.json").read_text())["validation"]
    assert v["model"] == "int8+optimized"
    int8, opt = v["int8"], v["optimized"]
    assert int8["min_cosine"] >= 0.99 and opt["min_cosine"] >= 0.99
    assert int8["max_norm_error"] <= 1e-5  # normalisation stays in float, in the graph
    # Some feed-forward MatMuls stay float (their GELU inputs have the worst outliers).
    assert 0 < len(int8["float_matmuls"]) < int8["quantized_matmuls"]
    assert all("/output/dense/" in n or "/intermediate/" in n for n in int8["float_matmuls"])
    fp32 = text_repository / TEXT_MODEL / "1" / "model.onnx"
    size = (int8_bundle / "model.onnx").stat().st_size
    assert size == opt["model_bytes"] and size < 0.5 * fp32.stat().st_size
    assert v["fp32_model_bytes"] == fp32.stat().st_size
    # Held out: 200 WordNet verb/adjective glosses (validation used noun glosses).
    reference = _embed(text_repository / TEXT_MODEL / "1", sentences)
    quantized = _embed(int8_bundle, sentences)
    cosine = (reference.astype(np.float64) * quantized).sum(axis=1)
    assert cosine.min() >= 0.99, cosine.min()
    assert np.abs(quantized - reference).max() > 1e-3  # really int8
