"""Fine-tuning a pretrained encoder on real Fashion-MNIST: early stopping, checkpoint, CLI."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from ssl_data import FASHION_MNIST_CLASSES, load_fashion_mnist
from ssl_data.datasets import bundled_sample_root
from ssl_train import CheckpointError, RecipeError, SslTrainError, recipe_from_dict
from ssl_train.classifier import load_classifier
from ssl_train.cli import main
from ssl_train.data import preprocess
from ssl_train.evaluation import topk_accuracy
from ssl_train.finetune import Finetuner, finetune_recipe
from ssl_train.trainer import Trainer

PRETRAIN = {
    "name": "tiny-pretrain",
    "threads": 1,
    "data": {"root": str(bundled_sample_root()), "limit": 512},
    "encoder": {"name": "small_cnn", "widths": [8, 16]},
    "method": {"name": "simclr", "projection_hidden_dim": 32, "projection_dim": 16,
               "temperature": 0.5},
    "optimizer": {"name": "sgd", "lr": 0.05},
    "schedule": {"warmup_steps": 2},
    "budget": {"batch_size": 64, "steps": 16},
    "checkpoint": {"every_steps": 100},
    "evaluation": {"every_epochs": None},
    "logging": {"progress_bar": False, "tensorboard": False, "plots": False,
                "embedding_map": False},
}  # fmt: skip
FAST = ["threads=1", "progress_bar=false"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A pretraining run of 16 SimCLR steps (about 2 s)."""
    run = tmp_path_factory.mktemp("pretrain") / "run"
    Trainer(recipe_from_dict(PRETRAIN), run).fit()
    return run


def _stop_epoch(values, patience, min_delta=0.0):
    """The patience rule, written out: the epoch after which training must stop, or None."""
    best, bad = -math.inf, 0
    for epoch, v in enumerate(values):
        if v > best + min_delta:
            best, bad = v, 0
        else:
            bad += 1
            if bad >= patience:
                return epoch
    return None


def test_linear_probe_stops_by_patience_and_saves_the_best_epoch(pretrained, tmp_path):
    recipe = finetune_recipe(
        {}, [*FAST, "budget.epochs=40", "budget.batch_size=128", "early_stopping.patience=2"]
    )
    assert recipe.mode == "linear" and recipe.optimizer.lr == 0.01  # the linear-mode default
    result = Finetuner(pretrained, recipe, tmp_path / "ft").fit()
    rows = [json.loads(x) for x in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_top1"] for r in rows]
    stop = _stop_epoch(val, patience=2)
    assert stop is not None and result.epochs == len(val) == stop + 1 < 40
    assert result.stopped_early is not None and "2 epochs" in result.stopped_early
    assert result.best_epoch == val.index(max(val)) and result.val_top1 == max(val)
    assert result.val_top1 > 0.4 and result.test_top1 > 0.4  # 10 classes: chance is 0.1
    assert result.test_top5 > result.test_top1

    # One checkpoint, the best epoch's: 1,800 training images / 128 = 14 steps per epoch.
    ckpts = tmp_path / "ft" / "checkpoints"
    assert [p.name for p in ckpts.glob("step-*")] == [f"step-{14 * (result.best_epoch + 1):08d}"]
    assert (ckpts / "latest").read_text().strip() == result.checkpoint.name
    meta = json.loads((result.checkpoint / "classifier.json").read_text())
    assert meta["labels"] == list(FASHION_MNIST_CLASSES) and meta["num_classes"] == 10
    assert meta["mode"] == "linear" and meta["epoch"] == result.best_epoch
    assert meta["metrics"]["val_top1"] == result.val_top1
    source = pretrained / "checkpoints" / "latest"
    src_dir = pretrained / "checkpoints" / source.read_text().strip()
    assert (result.checkpoint / "recipe.yaml").read_text() == (src_dir / "recipe.yaml").read_text()

    # The frozen encoder is saved unchanged, beside the head.
    saved = load_file(str(result.checkpoint / "model.safetensors"))
    pre = load_file(str(src_dir / "model.safetensors"))
    enc_keys = [k for k in saved if k.startswith("encoder.")]
    assert enc_keys and all(torch.equal(saved[k], pre[k]) for k in enc_keys)
    assert {"head.linear.weight", "head.linear.bias", "head.norm.running_mean"} <= set(saved)

    # Reloaded through the images (not the cached features), it scores the reported test top-1.
    model, _ = load_classifier(tmp_path / "ft")
    images, labels = load_fashion_mnist("test", root=bundled_sample_root())
    enc_recipe = recipe_from_dict(PRETRAIN)
    with torch.no_grad():
        logits = model(preprocess(enc_recipe, torch.from_numpy(images)))
    top1, _ = topk_accuracy(logits, labels)
    assert top1 == pytest.approx(result.test_top1, abs=2e-3)
    summary = json.loads((tmp_path / "ft" / "finetune_summary.json").read_text())
    assert summary["test_top1"] == result.test_top1 and summary["val_images"] == 200


def test_full_finetune_trains_the_encoder(pretrained, tmp_path):
    recipe = finetune_recipe(
        {"mode": "full"}, [*FAST, "data.limit=1000", "budget.epochs=3", "budget.batch_size=64"]
    )
    result = Finetuner(pretrained, recipe, tmp_path / "ft").fit()
    assert result.epochs == 3 and result.val_top1 > 0.25 and result.test_top1 > 0.3  # chance: 0.1
    saved = load_file(str(result.checkpoint / "model.safetensors"))
    src = pretrained / "checkpoints" / (pretrained / "checkpoints" / "latest").read_text().strip()
    pre = load_file(str(src / "model.safetensors"))
    assert not torch.equal(saved["encoder.stem.0.weight"], pre["encoder.stem.0.weight"])


def test_recipe_errors_name_the_key_and_the_allowed_values(pretrained, tmp_path):
    with pytest.raises(
        RecipeError, match=r"budget\.epoch: unknown key; allowed: batch_size, epochs"
    ):
        finetune_recipe({}, ["budget.epoch=3"])
    with pytest.raises(RecipeError, match=r"mode: .*'linear' or 'full'.*got 'partial'"):
        finetune_recipe({}, ["mode=partial"])
    with pytest.raises(RecipeError, match=r"layer_decay=0.75 needs mode 'full'"):
        finetune_recipe({}, ["layer_decay=0.75"])
    with pytest.raises(RecipeError, match=r"optimizer\.name: .*'lars'.*got 'lamb'"):
        finetune_recipe({}, ["optimizer.name=lamb"])
    full = finetune_recipe({}, ["mode=full", "layer_decay=0.75", *FAST])
    assert full.optimizer.lr == 0.001 and full.optimizer.weight_decay == 0.05
    assert finetune_recipe(__import__("yaml").safe_load(full.to_yaml())) == full
    with pytest.raises(SslTrainError, match="layer_decay=0.75: .*needs a ViT encoder"):
        Finetuner(pretrained, full, tmp_path / "vit").fit()
    big = finetune_recipe({}, [*FAST, "budget.batch_size=4096"])
    with pytest.raises(SslTrainError, match="fewer than budget.batch_size=4096"):
        Finetuner(pretrained, big, tmp_path / "big").fit()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Finetuner(tmp_path, big, tmp_path / "none").fit()


def test_cli_finetune(pretrained, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["finetune", str(pretrained), "--mode", "linear", "--output", str(out),
            "--set", "budget.epochs=2", "--set", "threads=1", "--set", "progress_bar=false"]  # fmt: skip
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["mode"] == "linear" and printed["epochs"] == 2 and printed["val_top1"] > 0.2
    assert main(args) == 2
    assert "already holds a fine-tuning run; pass --overwrite" in capsys.readouterr().err
    assert main(["finetune", str(tmp_path / "missing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["finetune", "--help"])
    assert err.value.code == 0 and "early_stopping" in capsys.readouterr().out
