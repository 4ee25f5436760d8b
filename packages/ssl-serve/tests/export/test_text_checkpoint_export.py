"""`ssl-serve export` of text runs' checkpoints (ssl-train pretrain / finetune on real WordNet
and fortunes): onnxruntime on the bundle vs PyTorch on the same checkpoint, mid-run steps,
classifier bundles, the shipped causal-LM and ELECTRA recipes, and broken checkpoints."""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ssl_serve.bundle import read_bundle
from ssl_serve.cli import main as serve_main
from ssl_serve.errors import CheckpointError
from ssl_serve.export import export_checkpoint, is_text_checkpoint, load_checkpoint
from ssl_serve.preprocess.text import TextTokenizer, pad_sequences
from ssl_serve.runtime import OnnxTextEmbedder

ssl_train = pytest.importorskip("ssl_train")

from ssl_data.datasets.wordnet import bundled_sample_root  # noqa: E402
from ssl_train import recipe_from_dict  # noqa: E402
from ssl_train.checkpoint import load_checkpoint as load_training_checkpoint  # noqa: E402
from ssl_train.evaluation import embed_texts  # noqa: E402
from ssl_train.recipe import load_recipe  # noqa: E402
from ssl_train.recipes import shipped_recipes  # noqa: E402
from ssl_train.text_data import run_tokenizer  # noqa: E402
from ssl_train.trainer import Trainer, build_model  # noqa: E402

PER_CLASS = 20
SENTENCES = [
    "a domesticated carnivorous mammal that typically has a long snout",
    "move fast by using one's feet",
    "the act of drinking",
    "having or showing knowledge",
    "a large body of water; " * 12,  # longer than max_length: truncated as in training
]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def wordnet_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("wordnet")
    for part in ("noun", "verb", "adj", "adv"):
        seen: Counter[str] = Counter()
        keep = []
        with gzip.open(bundled_sample_root() / f"data.{part}.gz", "rt", encoding="utf-8") as f:
            for line in f:
                if not line.startswith("  "):
                    seen[line.split(" ", 2)[1]] += 1
                    if seen[line.split(" ", 2)[1]] <= PER_CLASS:
                        keep.append(line)
        (root / f"data.{part}").write_text("".join(keep), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def run(wordnet_root, tmp_path_factory):
    """6 MLM steps of BERT-Tiny on real WordNet glosses, a checkpoint every 3 steps."""
    tree = {
        "name": "wordnet-mlm-tiny",
        "seed": 0,
        "threads": 1,
        "data": {"dataset": "wordnet", "root": str(wordnet_root), "max_length": 24},
        "tokenizer": {"train": {"kind": "wordpiece", "vocab_size": 800}},
        "encoder": {"name": "bert_tiny", "max_position_embeddings": 64, "pooling": "mean"},
        "method": {"name": "masked_lm"},
        "optimizer": {"name": "adamw", "lr": 0.003},
        "schedule": {"warmup_steps": 1},
        "budget": {"batch_size": 32, "steps": 6},
        "checkpoint": {"every_steps": 3, "keep_last": 3},
        "evaluation": {"every_epochs": None},
        "logging": {"progress_bar": False, "plots": False, "tensorboard": False},
    }
    out = tmp_path_factory.mktemp("text") / "run"
    Trainer(recipe_from_dict(tree), out).fit()
    return out


def _pytorch_embeddings(step_folder: Path, texts: list[str]) -> np.ndarray:
    """ssl-train's own embedding of texts from a checkpoint, L2-normalised."""
    recipe = load_recipe(step_folder / "recipe.yaml")
    tokenizer = run_tokenizer(step_folder)
    model = build_model(recipe, tokenizer.get_vocab_size())
    load_training_checkpoint(step_folder, model, None, recipe.sha256())
    x = embed_texts(model, tokenizer, texts, recipe.data.max_length)  # type: ignore[arg-type]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _bundle_embeddings(bundle: Path, texts: list[str], output: str = "embedding") -> np.ndarray:
    b = read_bundle(bundle)
    tokens = TextTokenizer(bundle / "tokenizer.json", b.preprocessing.max_length).tokenize(texts)
    embedder = OnnxTextEmbedder(
        bundle / "model.onnx", output_name=output, pad_id=b.preprocessing.pad_id, max_batch_size=2
    )
    return embedder.embed(tokens.ids)


def test_run_folder_exports_the_latest_step_and_matches_pytorch(run, tmp_path):
    assert is_text_checkpoint(run)
    bundle = export_checkpoint(run, tmp_path / "wn" / "1", name="wn", version="1")
    assert bundle["modality"] == "text" and bundle["provenance"]["step"] == 6
    assert bundle["preprocessing"]["max_length"] == 24 and bundle["embedding_dim"] == 128
    assert bundle["preprocessing"]["pooling"] == "mean"
    assert bundle["validation"]["example_inputs"]["max_abs_diff"] <= 1e-4
    folder = tmp_path / "wn" / "1"
    assert (folder / "tokenizer.json").read_bytes() == (run / "tokenizer.json").read_bytes()
    latest = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    assert (folder / "recipe.yaml").read_bytes() == (latest / "recipe.yaml").read_bytes()
    onnx = _bundle_embeddings(folder, SENTENCES)
    reference = _pytorch_embeddings(latest, SENTENCES)
    assert np.abs(onnx - reference).max() <= 1e-4


def test_mid_run_step_exports_its_own_weights(run, tmp_path):
    step3 = run / "checkpoints" / "step-00000003"
    final = export_checkpoint(run, tmp_path / "final", name="wn")
    mid = export_checkpoint(step3, tmp_path / "mid", name="wn")
    assert mid["provenance"]["step"] == 3 and final["provenance"]["step"] == 6
    at_mid = _bundle_embeddings(tmp_path / "mid", SENTENCES)
    assert np.abs(at_mid - _pytorch_embeddings(step3, SENTENCES)).max() <= 1e-4
    assert np.abs(at_mid - _bundle_embeddings(tmp_path / "final", SENTENCES)).max() > 1e-3


def test_cli_exports_a_text_run_into_a_repository(run, tmp_path, capsys):
    assert (
        serve_main(
            ["export", str(run), "--repository", str(tmp_path / "repo"), "--name", "wordnet-mlm"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "text checkpoint step-00000006 (step 6, method masked_lm)" in printed
    assert read_bundle(tmp_path / "repo" / "wordnet-mlm" / "1").modality == "text"


def test_finetuned_text_classifier_exports_labels_and_probabilities(run, tmp_path):
    from ssl_train.finetune import Finetuner, finetune_recipe
    from ssl_train.finetune_data import load_labelled_splits

    recipe = finetune_recipe(
        {"threads": 1, "progress_bar": False, "budget": {"epochs": 3, "batch_size": 32}}
    )
    result = Finetuner(run, recipe, tmp_path / "ft").fit()
    bundle = export_checkpoint(tmp_path / "ft", tmp_path / "clf", name="supersense")
    meta = json.loads((result.checkpoint / "classifier.json").read_text())
    assert bundle["labels"] == meta["labels"] and len(meta["labels"]) == 45
    assert [o["name"] for o in bundle["outputs"]] == ["embedding", "probabilities"]
    assert bundle["validation"]["probabilities"]["max_abs_diff"] <= 1e-4
    # The bundle reproduces the held-out accuracy ssl-train reported for the classifier.
    enc_recipe = load_recipe(result.checkpoint / "recipe.yaml")
    splits = load_labelled_splits(
        enc_recipe, path=None, test_fraction=0.2, limit=None, checkpoint=result.checkpoint
    )
    from ssl_train.text_data import load_text_corpus

    texts = load_text_corpus(enc_recipe).queries
    probs = _bundle_embeddings(tmp_path / "clf", texts, output="probabilities")
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float((probs.argmax(axis=1) == splits.test_labels).mean())
    assert accuracy == pytest.approx(result.test_top1, abs=1e-9)
    _served_classify_equals_in_process(tmp_path, bundle["labels"], texts[:40], probs[:40])


def _served_classify_equals_in_process(
    tmp_path: Path, labels: list[str], texts: list[str], probs: np.ndarray
) -> None:
    """The classifier bundle served: Classify (client and CLI) and Embed on texts."""
    from serve_helpers import start_server, stop_server

    from ssl_serve.client import EmbeddingClient

    repo = tmp_path / "repo"
    (repo / "supersense").mkdir(parents=True)
    shutil.copytree(tmp_path / "clf", repo / "supersense" / "1")
    srv = start_server(repo, tmp_path / "server.log")
    try:
        with EmbeddingClient(srv.address, timeout_s=60) as client:
            served = client.classify_texts("supersense", texts, top_k=3, batch_size=16)
            assert served.labels == tuple(labels)
            assert np.abs(served.probabilities - probs).max() <= 1e-5
            best = [top[0][0] for top in served.top_k]
            assert best == [labels[i] for i in probs.argmax(axis=1)]
            emb = client.embed_texts("supersense", texts[:3])
            local = _bundle_embeddings(tmp_path / "clf", texts[:3])
            assert np.abs(emb - local).max() <= 1e-5
        out = tmp_path / "p.npy"
        args = ["classify", "--target", srv.address, "--model", "supersense", "--top-k", "1"]
        assert serve_main([*args, "--text", texts[0], "--output", str(out)]) == 0
        np.testing.assert_allclose(np.load(out), probs[:1], atol=1e-5)
    finally:
        assert stop_server(srv) == 0, srv.log.read_text()


@pytest.mark.parametrize("name", ["fortunes_causal_lm", "wordnet_electra"])
def test_shipped_text_recipe_trains_two_steps_and_exports(name, wordnet_root, tmp_path):
    tree = yaml.safe_load(shipped_recipes()[name].read_text())
    overrides = [
        "data.limit=96",
        "budget.batch_size=16",
        "budget.steps=2",
        "threads=1",
        "tokenizer.train.vocab_size=500",
        "evaluation.every_epochs=null",
        "logging.progress_bar=false",
        "logging.plots=false",
        "logging.tensorboard=false",
    ]
    if tree["data"]["dataset"] == "wordnet":
        overrides.append(f"data.root={wordnet_root}")
    result = Trainer(recipe_from_dict(tree, overrides), tmp_path / "run").fit()
    assert result.steps == 2 and np.isfinite(result.final_loss)
    bundle = export_checkpoint(tmp_path / "run", tmp_path / "bundle", name=name.replace("_", "-"))
    assert bundle["provenance"]["method"] == tree["method"]["name"]
    assert bundle["validation"]["max_abs_diff"] <= 1e-4
    latest = tmp_path / "run" / "checkpoints" / "step-00000002"
    onnx = _bundle_embeddings(tmp_path / "bundle", SENTENCES)
    assert np.abs(onnx - _pytorch_embeddings(latest, SENTENCES)).max() <= 1e-4


def _copy_step(run: Path, tmp_path: Path) -> Path:
    """A copy of the final step folder inside a copied run (so the run's tokenizer is there)."""
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst / "checkpoints" / "step-00000006"


def test_broken_text_checkpoints_name_the_file(run, tmp_path):
    step = _copy_step(run, tmp_path)
    with pytest.raises(CheckpointError, match="is a text run"):
        load_checkpoint(step)  # the image reader points to the text one

    (step / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors"):
        export_checkpoint(step, tmp_path / "b1", name="x")
    assert not (tmp_path / "b1").exists()

    step = _copy_step(run, tmp_path / "2")
    (step.parent.parent / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"no tokenizer\.json in"):
        export_checkpoint(step, tmp_path / "b2", name="x")

    step = _copy_step(run, tmp_path / "3")
    recipe = yaml.safe_load((step / "recipe.yaml").read_text())
    recipe["encoder"]["max_position_embeddings"] = 32
    (step / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not fit encoder"):
        export_checkpoint(step, tmp_path / "b3", name="x")

    step = _copy_step(run, tmp_path / "4")
    from safetensors.numpy import save_file

    save_file(
        {"pixel_values": np.zeros((1, 1, 2, 2), np.float32)},
        str(step / "example_inputs.safetensors"),
    )
    with pytest.raises(CheckpointError, match=r"example_inputs\.safetensors lacks 'input_ids'"):
        export_checkpoint(step, tmp_path / "b4", name="x")


def test_last_token_pooling_has_no_bundle_pooling(run, tmp_path):
    step = _copy_step(run, tmp_path)
    recipe = yaml.safe_load((step / "recipe.yaml").read_text())
    recipe["method"]["pooling"] = "last"
    (step / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(CheckpointError, match="pools by 'last'"):
        export_checkpoint(step, tmp_path / "b", name="x")


def test_padding_does_not_reach_the_embedding(run, tmp_path):
    export_checkpoint(run, tmp_path / "b", name="wn")
    b = read_bundle(tmp_path / "b")
    tokens = TextTokenizer(tmp_path / "b" / "tokenizer.json", 24).tokenize(SENTENCES[:2])
    embedder = OnnxTextEmbedder(tmp_path / "b" / "model.onnx", pad_id=b.preprocessing.pad_id)
    ids, mask = pad_sequences(tokens.ids, b.preprocessing.pad_id)
    together = embedder.embed_padded(ids, mask)
    alone = embedder.embed_padded(ids[1:2, : int(mask[1].sum())], mask[1:2, : int(mask[1].sum())])
    assert np.abs(together[1] - alone[0]).max() <= 1e-5
