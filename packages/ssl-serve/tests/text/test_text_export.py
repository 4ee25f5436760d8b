"""Export of the real all-MiniLM-L6-v2: bundle contents, dynamic axes, padding invariance,
CLS and max pooling against transformers' own hidden states, the tolerance check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ssl_serve.bundle import read_bundle
from ssl_serve.errors import CheckpointError, ExportValidationError
from ssl_serve.export import export_hf_model, pool_tokens, read_sentence_transformers_config
from ssl_serve.preprocess import TextTokenizer, pad_sequences

TEXT_MODEL = "minilm"


def test_bundle_describes_the_text_export(text_repository: Path, minilm_dir: Path) -> None:
    folder = text_repository / TEXT_MODEL / "1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "bundle.json",
        "model.onnx",
        "tokenizer.json",
    ]
    assert (folder / "tokenizer.json").read_bytes() == (minilm_dir / "tokenizer.json").read_bytes()
    bundle = read_bundle(folder)
    assert (bundle.modality, bundle.embedding_dim, bundle.normalized) == ("text", 384, True)
    assert bundle.input_names == ("input_ids", "attention_mask", "token_type_ids")
    assert all(s.dtype == "int64" and s.shape == ("batch", "sequence") for s in bundle.inputs)
    # sentence_bert_config.json says 256 (tokenizer.json's own truncation says 128).
    assert bundle.preprocessing.to_dict() == {
        "tokenizer": "tokenizer.json",
        "max_length": 256,
        "pooling": "mean",
        "pad_id": 0,
    }
    v = bundle.validation
    assert v["max_abs_diff"] <= 1e-4 and v["min_cosine"] >= 1 - 1e-4
    assert v["max_norm_error"] <= 1e-5 and v["tokenizer_mismatches"] == 0
    assert v["num_inputs"] == 33 and v["num_truncated"] == 1
    assert v["sequence_lengths"][1] == 256 and v["batch_sizes"] == [33, 7, 1]
    st = bundle.provenance["sentence_transformers"]
    assert st == {"pooling": "mean", "normalize": True, "max_seq_length": 256}


def test_onnx_runs_at_new_batch_and_sequence_sizes_padding_invariant(
    text_repository: Path, sentences: list[str]
) -> None:
    folder = text_repository / TEXT_MODEL / "1"
    session = ort.InferenceSession(str(folder / "model.onnx"))
    tokens = TextTokenizer(folder / "tokenizer.json", 256).tokenize(
        [sentences[3], " ".join(sentences[:40]), sentences[4], sentences[5], sentences[6]]
    )

    def run(ids_list: list[np.ndarray]) -> np.ndarray:
        ids, mask = pad_sequences(ids_list, 0)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return session.run(["embedding"], feeds)[0]

    batch = run(tokens.ids)  # (5, 256): short texts padded next to a 256-token neighbour
    assert batch.shape == (5, 384)
    for i in (0, 2, 3, 4):
        alone = run([tokens.ids[i]])  # (1, L_i): batch and sequence sizes new to the graph
        assert np.abs(alone[0] - batch[i]).max() <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "max"])
def test_cls_and_max_pooling_graphs_equal_transformers_hidden_states(
    pooling: str, minilm_dir: Path, sentences: list[str], tmp_path: Path
) -> None:
    from transformers import AutoModel

    folder = tmp_path / pooling
    bundle = export_hf_model(
        minilm_dir, folder, name=pooling, pooling=pooling, validation_texts=sentences[:8]
    )
    assert bundle["preprocessing"]["pooling"] == pooling
    assert bundle["validation"]["max_abs_diff"] <= 1e-4
    texts = [sentences[10], sentences[11] + " " + sentences[12], "a", sentences[13]]
    ids, mask = pad_sequences(TextTokenizer(folder / "tokenizer.json", 256).tokenize(texts).ids, 0)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    served = ort.InferenceSession(str(folder / "model.onnx")).run(["embedding"], feeds)[0]
    # The reference: transformers' last hidden states, pooled and normalised in numpy.
    with torch.no_grad():
        model = AutoModel.from_pretrained(minilm_dir).eval()
        states = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})[0].numpy()
    if pooling == "cls":
        pooled = states[:, 0]
    else:
        pooled = np.stack([s[m == 1].max(axis=0) for s, m in zip(states, mask, strict=True)])
    expected = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    assert served.shape == (4, 384)
    np.testing.assert_allclose(served, expected, atol=2e-5)


def test_export_above_the_tolerance_fails_and_writes_nothing(
    minilm_dir: Path, sentences: list[str], tmp_path: Path
) -> None:
    # onnxruntime and PyTorch agree to about 1e-7 on MiniLM, never to 1e-12.
    with pytest.raises(ExportValidationError, match=r"max_abs_diff = .* > tolerance") as info:
        export_hf_model(
            minilm_dir, tmp_path / "m", name="m", validation_texts=sentences[:4], tolerance=1e-12
        )
    assert 1e-12 < info.value.figures["max_abs_diff"] <= 1e-4
    assert list(tmp_path.iterdir()) == []


def test_pooling_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    states = rng.standard_normal((3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    t, m = torch.from_numpy(states), torch.from_numpy(mask)
    for i, n in enumerate(mask.sum(axis=1)):
        mean = pool_tokens(t, m, "mean")[i].numpy()
        np.testing.assert_allclose(mean, states[i, :n].mean(axis=0), atol=1e-6)
        np.testing.assert_array_equal(pool_tokens(t, m, "max")[i].numpy(), states[i, :n].max(0))
        np.testing.assert_array_equal(pool_tokens(t, m, "cls")[i].numpy(), states[i, 0])
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool_tokens(t, m, "mean_sqrt_len")


def test_sentence_transformers_config(minilm_dir: Path, tmp_path: Path) -> None:
    cfg = read_sentence_transformers_config(minilm_dir)
    assert (cfg.pooling, cfg.normalize, cfg.max_seq_length) == ("mean", True, 256)
    empty = read_sentence_transformers_config(tmp_path)
    assert (empty.pooling, empty.normalize, empty.max_seq_length) == (None, False, None)
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_mean_sqrt_len_tokens": True, "pooling_mode_cls_token": False})
    )
    with pytest.raises(CheckpointError, match="pooling_mode_mean_sqrt_len_tokens"):
        read_sentence_transformers_config(tmp_path)
