"""`ssl-train finetune` on text runs (WordNet supersenses, a label<TAB>text file) and on
image_folder runs (labels from class sub-folders), on real data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer

from ssl_data import load_fashion_mnist, load_wordnet_glosses
from ssl_data.datasets import bundled_sample_root as fashion_sample_root
from ssl_train import RecipeError, SslTrainError, recipe_from_dict
from ssl_train.classifier import load_classifier
from ssl_train.cli import main
from ssl_train.data import split_bank_queries
from ssl_train.finetune_data import read_labelled_texts
from ssl_train.recipes import shipped_recipes
from ssl_train.text_data import load_text_corpus
from ssl_train.trainer import Trainer

FAST = ["--set", "threads=1", "--set", "progress_bar=false"]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def text_run(wordnet_root, tmp_path_factory):
    """8 MLM steps of BERT-Tiny on the small WordNet (about 4 s)."""
    tree = {
        "name": "wordnet-mlm-tiny",
        "seed": 0,
        "threads": 1,
        "data": {"dataset": "wordnet", "root": str(wordnet_root), "max_length": 32},
        "tokenizer": {"train": {"kind": "wordpiece", "vocab_size": 1000}},
        "encoder": {"name": "bert_tiny", "max_position_embeddings": 64, "pooling": "mean"},
        "method": {"name": "masked_lm"},
        "optimizer": {"name": "adamw", "lr": 0.001, "weight_decay": 0.01},
        "schedule": {"warmup_steps": 2},
        "budget": {"batch_size": 32, "steps": 8},
        "checkpoint": {"every_steps": 100},
        "evaluation": {"every_epochs": None},
        "logging": {"progress_bar": False, "plots": False, "tensorboard": False},
    }
    run = tmp_path_factory.mktemp("text") / "run"
    Trainer(recipe_from_dict(tree), run).fit()
    return run


def _predict(model, tokenizer: Tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    """Class ids by the reloaded classifier, tokenised and padded here (not by ssl-train)."""
    pad = tokenizer.token_to_id("[PAD]")
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), 50):
            ids = [e.ids for e in tokenizer.encode_batch(texts[start : start + 50])]
            width = max(map(len, ids))
            x = torch.tensor([r + [pad] * (width - len(r)) for r in ids])
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in ids])
            out.append(model(x, mask).argmax(1).numpy())
    return np.concatenate(out)


def test_wordnet_supersense_linear_probe_reloads_to_its_accuracy(text_run, wordnet_root, capsys):
    out = text_run.parent / "ft"
    assert (
        main(
            [
                "finetune",
                str(text_run),
                "--output",
                str(out),
                "--set",
                "budget.epochs=6",
                "--set",
                "budget.batch_size=32",
                *FAST,
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    summary = json.loads((out / "finetune_summary.json").read_text())
    assert summary["classes"] == 45 and summary["mode"] == "linear"
    glosses = load_wordnet_glosses(wordnet_root)
    labels = np.asarray(glosses.labels)
    bank, queries = split_bank_queries(labels, 0.2)
    assert summary["test_texts"] == len(queries) and summary["val_texts"] == round(0.1 * len(bank))
    # The test texts are the pretraining run's held-out queries, never pretrained on.
    corpus = load_text_corpus(recipe_from_dict(yaml_tree(text_run)))
    assert not set(corpus.queries) & set(corpus.train)

    model, meta = load_classifier(out)
    ckpt = Path(summary["checkpoint"])
    assert (ckpt / "tokenizer.json").read_bytes() == (text_run / "tokenizer.json").read_bytes()
    assert meta["labels"] == list(glosses.label_names)
    tokenizer = Tokenizer.from_file(str(ckpt / "tokenizer.json"))
    pred = _predict(model, tokenizer, [glosses.texts[i] for i in queries], 32)
    accuracy = float((pred == labels[queries]).mean())
    assert accuracy == pytest.approx(summary["test_top1"], abs=1e-9)
    assert printed["test_top1"] == round(accuracy, 4)
    majority = Counter(labels[queries].tolist()).most_common(1)[0][1] / len(queries)
    assert accuracy > majority  # a real signal, not the most frequent supersense


def yaml_tree(run: Path) -> dict:
    import yaml

    return yaml.safe_load((run / "recipe.yaml").read_text())


def _tsv(path: Path, wordnet_root: Path) -> tuple[list[str], list[str]]:
    """Real glosses labelled by part of speech (noun/verb), with a comment and a blank line."""
    glosses = load_wordnet_glosses(wordnet_root)
    rows = [
        (glosses.label_names[y].split(".")[0], t)
        for t, y in zip(glosses.texts, glosses.labels, strict=True)
    ]
    rows = [r for r in rows if r[0] in ("noun", "verb")][::3]
    body = "\n".join(f"{label}\t{text}" for label, text in rows)
    path.write_text(f"# part of speech\ttext\n\n{body}\n", encoding="utf-8")
    return [r[0] for r in rows], [r[1] for r in rows]


def test_labelled_text_file_full_finetune(text_run, wordnet_root, tmp_path):
    tsv = tmp_path / "pos.tsv"
    labels, texts = _tsv(tsv, wordnet_root)
    read_texts, ids, names = read_labelled_texts(tsv)
    assert names == ("noun", "verb") and read_texts == texts
    assert [names[i] for i in ids] == labels
    out = tmp_path / "ft"
    assert (
        main(
            [
                "finetune",
                str(text_run),
                "--mode",
                "full",
                "--output",
                str(out),
                "--set",
                f"data.path={tsv}",
                "--set",
                "budget.epochs=2",
                "--set",
                "budget.batch_size=32",
                *FAST,
            ]
        )
        == 0
    )
    summary = json.loads((out / "finetune_summary.json").read_text())
    assert summary["classes"] == 2
    assert summary["test_texts"] == len(split_bank_queries(ids, 0.2)[1])
    assert 0.0 <= summary["test_top1"] <= 1.0 and summary["test_top5"] == 1.0  # K = 2 < 5
    model, _ = load_classifier(out)
    pretrained = load_file_keys(text_run)
    tuned = {k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}
    assert any(not torch.equal(pretrained[k], v) for k, v in tuned.items())  # encoder trained


def load_file_keys(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    latest = (run / "checkpoints" / "latest").read_text().strip()
    return load_file(str(run / "checkpoints" / latest / "model.safetensors"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("noun\tan entity\nverb no tab here\n", "line 2 is not 'label<TAB>text'"),
        ("noun\tan entity\nnoun\ta thing\n", "at least 2 classes"),
        ("noun\t \nverb\tto be\n", "line 1"),
    ],
)
def test_labelled_text_file_errors_name_the_line(tmp_path, content, message):
    bad = tmp_path / "bad.tsv"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(RecipeError, match=message):
        read_labelled_texts(bad)
    with pytest.raises(RecipeError, match="not found"):
        read_labelled_texts(tmp_path / "missing.tsv")


def test_unlabelled_text_run_needs_a_labelled_file(text_run, tmp_path, wordnet_root):
    from ssl_train.finetune_data import load_labelled_splits

    tree = yaml_tree(text_run)
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(load_wordnet_glosses(wordnet_root).texts[:40]) + "\n")
    tree["data"] = {"dataset": "text_file", "path": str(texts), "max_length": 32}
    recipe = recipe_from_dict(tree)
    with pytest.raises(SslTrainError, match="data.path=FILE"):
        load_labelled_splits(
            recipe,
            path=None,
            test_fraction=0.2,
            limit=None,
            checkpoint=text_run / "checkpoints" / "x",
        )


def test_image_folder_run_finetunes_on_its_class_folders(tmp_path):
    images, labels = load_fashion_mnist("train", root=fashion_sample_root())
    images, labels = images[:240], labels[:240]
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = tmp_path / "images" / f"class_{label}" / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    run = tmp_path / "run"
    assert (
        main(
            [
                "pretrain",
                str(shipped_recipes()["image_folder_simclr"]),
                "--output",
                str(run),
                "--set",
                f"data.path={tmp_path / 'images'}",
                "--set",
                "data.image_size=28",
                "--set",
                "data.channels=1",
                "--set",
                "data.mean=[0.2860]",
                "--set",
                "data.std=[0.3530]",
                "--set",
                "budget.epochs=null",
                "--set",
                "budget.steps=2",
                "--set",
                "budget.batch_size=32",
                "--set",
                "encoder.widths=[8,16]",
                "--set",
                "threads=1",
                "--set",
                "logging.progress_bar=false",
                "--set",
                "logging.plots=false",
                "--set",
                "logging.tensorboard=false",
            ]
        )
        == 0
    )
    out = tmp_path / "ft"
    assert (
        main(
            [
                "finetune",
                str(run),
                "--output",
                str(out),
                "--set",
                "budget.epochs=3",
                "--set",
                "budget.batch_size=32",
                *FAST,
            ]
        )
        == 0
    )
    summary = json.loads((out / "finetune_summary.json").read_text())
    counts = Counter(labels.tolist())
    n_test = len(split_bank_queries(labels, 0.2)[1])
    assert summary["classes"] == len(counts)
    assert summary["test_images"] == n_test
    assert summary["train_images"] + summary["val_images"] == len(labels) - n_test
    _, meta = load_classifier(out)
    assert meta["labels"] == [f"class_{c}" for c in sorted(counts)]
