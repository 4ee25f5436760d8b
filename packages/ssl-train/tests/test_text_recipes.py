"""Text recipes through the trainer: CLI run, exact resume, MLM loss at init, kNN evaluation."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from tokenizers import Tokenizer

import ssl_models
from ssl_train import RecipeError, recipe_from_dict
from ssl_train.cli import main
from ssl_train.trainer import Trainer

STEPS = 6


def _tree(root) -> dict:
    return {
        "name": "wordnet-mlm-tiny",
        "seed": 0,
        "threads": 1,
        "data": {"dataset": "wordnet", "root": str(root), "max_length": 32},
        "tokenizer": {"train": {"kind": "wordpiece", "vocab_size": 1000}},
        "encoder": {"name": "bert_tiny", "max_position_embeddings": 64, "pooling": "mean"},
        "method": {"name": "masked_lm"},
        "optimizer": {"name": "adamw", "lr": 0.001, "weight_decay": 0.01},
        "schedule": {"warmup_steps": 2},
        "budget": {"batch_size": 32, "steps": STEPS},
        "checkpoint": {"every_steps": 100},
        "evaluation": {"knn_k": 20, "bank_size": 300, "heldout_size": 100},
        "logging": {"progress_bar": False, "every_steps": 1, "plots": False},
    }


def _rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _latest(run):
    return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()


@pytest.fixture(scope="module")
def full_run(wordnet_root, tmp_path_factory):
    """The recipe through the CLI, tokenizer trained at run start."""
    tmp = tmp_path_factory.mktemp("full")
    recipe_file = tmp / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(_tree(wordnet_root)))
    torch.set_num_threads(1)
    assert main(["pretrain", str(recipe_file), "--output", str(tmp / "run")]) == 0
    return tmp / "run"


def test_cli_run_writes_tokenizer_metrics_and_hf_folder(full_run):
    rows = _rows(full_run)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert rows[-1]["tokens_per_s"] > 0 and rows[-1]["texts_per_s"] > 0
    assert 0 <= rows[-1]["knn_top1"] <= 1  # online kNN at the end
    summary = json.loads((full_run / "train_summary.json").read_text())
    assert summary["steps"] == STEPS and summary["hf_model"] == str(full_run / "hf")
    tokenizer = Tokenizer.from_file(str(full_run / "tokenizer.json"))
    hf = full_run / "hf"
    assert (hf / "tokenizer.json").read_bytes() == (full_run / "tokenizer.json").read_bytes()
    config = json.loads((hf / "config.json").read_text())
    assert config["vocab_size"] == tokenizer.get_vocab_size() and config["hidden_size"] == 128
    assert json.loads((hf / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"]
    # The Hugging Face weights are the checkpoint's encoder weights.
    weights = load_file(str(hf / "model.safetensors"))
    ckpt = load_file(str(_latest(full_run) / "model.safetensors"))
    key = "embeddings.word_embeddings.weight"
    assert torch.equal(weights[key], ckpt[f"encoder.bert.{key}"])


def test_mlm_loss_at_step_one_is_log_vocab_size(full_run):
    # Random init: the tied head's logits are a unit-variance state times embeddings of std
    # 0.02, so they have std s = 0.02 * sqrt(128) ~ 0.23 and the masked-token cross-entropy is
    # about that of a uniform guess, ln V + s^2 / 2 ~ ln V + 0.03, give or take the noise of
    # a few hundred masked tokens. A wrong vocabulary (ln 500 vs ln 1000: 0.69 apart), loss
    # over unmasked positions' labels or an untied head would fall outside.
    vocab = Tokenizer.from_file(str(full_run / "tokenizer.json")).get_vocab_size()
    first = _rows(full_run)[0]["loss"]
    expected = math.log(vocab) + (0.02**2 * 128) / 2
    assert abs(first - expected) < 0.1, (first, expected)


def test_resume_in_a_new_process_is_exact(full_run, wordnet_root, tmp_path):
    # The same run with the full run's tokenizer file: stopped at step 3, resumed by the CLI
    # in a new process; every step's loss, the final weights and optimiser state match.
    tree = _tree(wordnet_root)
    tree["tokenizer"] = {"path": str(full_run / "tokenizer.json")}
    recipe = recipe_from_dict(tree)
    half = Trainer(recipe, tmp_path / "half").fit(stop_at_step=STEPS // 2)
    assert half.steps == STEPS // 2
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(recipe.to_yaml())
    proc = subprocess.run(
        [sys.executable, "-m", "ssl_train.cli", "pretrain", str(recipe_file),
         "--output", str(tmp_path / "half"), "--resume"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["steps"] == STEPS
    want = [(r["step"], r["loss"], r.get("knn_top1")) for r in _rows(full_run)]
    got = [(r["step"], r["loss"], r.get("knn_top1")) for r in _rows(tmp_path / "half")]
    assert got == want
    for name in ("model.safetensors", "optimizer.safetensors"):
        a = load_file(str(_latest(full_run) / name))
        b = load_file(str(_latest(tmp_path / "half") / name))
        assert a.keys() == b.keys() and a
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}:{k}"


def _reference_knn_top1(bank, bank_y, queries, query_y, k, temperature):
    """Weighted kNN (cosine, votes exp(cos / T)) in plain numpy, float64."""
    a = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sim = q @ a.T
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    classes = int(max(bank_y.max(), query_y.max())) + 1
    votes = np.zeros((len(q), classes))
    for i in range(len(q)):
        np.add.at(votes[i], bank_y[top[i]], np.exp(sim[i, top[i]] / temperature))
    return float((votes.argmax(axis=1) == query_y).mean())


def test_evaluate_equals_independent_knn_and_beats_chance(full_run, wordnet_root, capsys):
    from ssl_data import load_wordnet_glosses
    from ssl_train.data import split_bank_queries

    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(full_run), "--k", "20", "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)

    # Independently: the held-out split, the tokenizer cut to max_length, the encoder built
    # from the checkpoint's weights, mean-pooled over real tokens in batches of 64 in file order.
    glosses = load_wordnet_glosses(wordnet_root)
    labels = np.asarray(glosses.labels)
    bank_idx, query_idx = split_bank_queries(labels, 0.2)
    tokenizer = Tokenizer.from_file(str(full_run / "tokenizer.json"))
    tokenizer.enable_truncation(32)
    encoder = ssl_models.build_encoder(
        {"name": "bert_tiny", "vocab_size": tokenizer.get_vocab_size(),
         "max_position_embeddings": 64, "pooling": "mean"}
    )  # fmt: skip
    method = ssl_models.build_method({"name": "masked_lm"}, encoder)
    method.load_state_dict(load_file(str(_latest(full_run) / "model.safetensors")))
    method.eval()

    def embed(indices):
        out = []
        with torch.no_grad():
            for s in range(0, len(indices), 64):
                enc = [tokenizer.encode(glosses.texts[i]) for i in indices[s : s + 64]]
                length = max(len(e.ids) for e in enc)
                ids = torch.zeros(len(enc), length, dtype=torch.int64)
                mask = torch.zeros(len(enc), length, dtype=torch.int64)
                for j, e in enumerate(enc):
                    ids[j, : len(e.ids)] = torch.tensor(e.ids)
                    mask[j, : len(e.ids)] = 1
                out.append(method.embed(ids, mask).numpy())
        return np.concatenate(out).astype(np.float64)

    # One thread, as `evaluate --threads 1`: a barely trained encoder's embeddings are close
    # together, so a different reduction order in a multi-threaded kernel can reorder neighbours.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        bank, queries = embed(bank_idx), embed(query_idx)
    finally:
        torch.set_num_threads(threads)
    reference = _reference_knn_top1(bank, labels[bank_idx], queries, labels[query_idx], 20, 0.1)
    assert result["memory_bank"] == len(bank_idx) and result["queries"] == len(query_idx)
    assert result["knn_top1_k20"] == reference
    chance = np.bincount(labels[query_idx]).max() / len(query_idx)  # the majority class
    assert result["knn_top1_k20"] > chance


def _error(tree, *overrides):
    with pytest.raises(RecipeError) as err:
        recipe_from_dict(tree, list(overrides))
    return str(err.value)


def test_validation_errors_name_the_key(wordnet_root):
    tree = _tree(wordnet_root)
    msg = _error(tree, "views={name: simclr}")
    assert "views: 'simclr' is not a text view generator" in msg and "mlm_masking" in msg
    msg = _error(tree, "views={name: tokens}")  # masked_lm needs masks
    assert "views: method 'masked_lm' trains with views.name mlm_masking" in msg
    msg = _error(tree, "views={name: mlm_masking, mask_probabilty: 0.2}")
    assert "views:" in msg and "mask_probability" in msg
    assert "data.image_size not read when data.dataset is wordnet" in _error(
        tree, "data.image_size=32"
    )
    assert "method: 'simclr' is not a text method" in _error(tree, "method={name: simclr}")
    no_tokenizer = {k: v for k, v in tree.items() if k != "tokenizer"}
    assert "tokenizer: data.dataset wordnet is text and needs a tokenizer" in _error(no_tokenizer)
    assert "data.max_length=100 tokens exceeds encoder max_position_embeddings=64" in _error(
        tree, "data.max_length=100"
    )
