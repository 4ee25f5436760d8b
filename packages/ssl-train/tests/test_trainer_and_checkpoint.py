import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from ssl_train import CheckpointError, SslTrainError, recipe_from_dict
from ssl_train.checkpoint import TrainerState, load_checkpoint, resolve_checkpoint, save_checkpoint
from ssl_train.cli import main
from ssl_train.trainer import Trainer, build_model


def test_run_writes_checkpoints_metrics_and_example_inputs(tiny_recipe, tmp_path):
    result = Trainer(tiny_recipe, tmp_path / "run").fit()
    assert result.steps == 6 and result.checkpoint.name == "step-00000006"
    ckpts = tmp_path / "run" / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step-00000006"
    assert sorted(p.name for p in ckpts.glob("step-*")) == ["step-00000003", "step-00000006"]
    assert not list(ckpts.glob(".*step*"))  # no temp folder left behind
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6]
    assert lines[0]["lr"] == pytest.approx(0.025)  # warm-up: 0.05 * 1/2
    ex = load_file(str(result.checkpoint / "example_inputs.safetensors"))
    assert ex["pixel_values"].shape == (64, 1, 28, 28) and ex["images"].shape == (64, 28, 28, 1)
    expected = (ex["images"].permute(0, 3, 1, 2).float() / 255 - 0.2860) / 0.3530
    torch.testing.assert_close(ex["pixel_values"], expected)


def test_resume_matches_uninterrupted_run(tiny_tree, tiny_recipe, tmp_path):
    full = Trainer(tiny_recipe, tmp_path / "full").fit()
    half = recipe_from_dict(tiny_tree, ["budget.steps=6"])
    # stop after 3 steps by cutting the budget to 3, then resume the same recipe to 6
    first = Trainer(recipe_from_dict(tiny_tree, ["budget.steps=3"]), tmp_path / "half").fit()
    assert first.steps == 3
    # the step-3 checkpoint belongs to another recipe hash: resume must refuse it...
    with pytest.raises(CheckpointError, match="different recipe"):
        Trainer(half, tmp_path / "half", resume=True).fit()
    # ...so resume from the full run's own step-3 checkpoint instead
    (tmp_path / "full" / "checkpoints" / "latest").write_text("step-00000003\n")
    resumed = Trainer(half, tmp_path / "full", resume=True).fit()
    assert resumed.steps == 6
    a = load_file(str(full.checkpoint / "model.safetensors"))
    b = load_file(str(resumed.checkpoint / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_corrupt_checkpoint_names_file(tiny_recipe, tmp_path):
    result = Trainer(tiny_recipe, tmp_path / "run").fit()
    (result.checkpoint / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="step-00000006: corrupt"):
        load_checkpoint(tmp_path / "run", build_model(tiny_recipe), None, tiny_recipe.sha256())
    with pytest.raises(CheckpointError, match="no checkpoint"):
        resolve_checkpoint(tmp_path)


def test_cli_pretrain_and_evaluate(tiny_tree, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe_from_dict(tiny_tree).to_yaml())
    assert (
        main(
            ["pretrain", str(recipe), "--output", str(tmp_path / "run"), "--set", "budget.steps=2"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["steps"] == 2
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(tmp_path / "run"),
                "--k",
                "5",
                "--output",
                str(tmp_path / "e.json"),
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["memory_bank"] == 256 and res["queries"] == 256  # limit applies to both splits
    assert 0.2 < res["knn_top1_k5"] <= 1.0  # 10 classes: chance is 0.1
    assert main(["pretrain", str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_rerun_into_a_run_folder_needs_resume_or_overwrite(tiny_recipe, tmp_path):
    Trainer(tiny_recipe, tmp_path / "run").fit()
    with pytest.raises(SslTrainError, match="already holds a run; pass --resume .* --overwrite"):
        Trainer(tiny_recipe, tmp_path / "run").fit()
    shorter = recipe_from_dict(tiny_recipe.model_dump(mode="json"), ["budget.steps=2"])
    result = Trainer(shorter, tmp_path / "run", overwrite=True).fit()
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("step-*")) == ["step-00000002"]
    assert resolve_checkpoint(tmp_path / "run") == result.checkpoint
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(SslTrainError, match="already holds files"):
        Trainer(tiny_recipe, tmp_path / "other", overwrite=True).fit()
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_pruning_keeps_the_checkpoint_just_written(tiny_recipe, tmp_path):
    model = build_model(tiny_recipe)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in (8, 4, 3):
        path = save_checkpoint(tmp_path, model=model, optimizer=opt, state=TrainerState(step, 0, step, "x"),
                               recipe_yaml="", example_inputs={"x": torch.zeros(1)}, keep_last=2)  # fmt: skip
    assert path.is_dir() and resolve_checkpoint(tmp_path) == path
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == [
        "step-00000003",
        "step-00000008",
    ]


def test_resume_with_changed_recipe_names_the_keys(tiny_recipe, tmp_path):
    Trainer(tiny_recipe, tmp_path / "run").fit()
    longer = recipe_from_dict(
        tiny_recipe.model_dump(mode="json"), ["budget.steps=10", "optimizer.lr=0.1"]
    )
    with pytest.raises(
        CheckpointError, match=r"budget\.steps: 6 -> 10, optimizer\.lr: 0\.05 -> 0\.1"
    ):
        Trainer(longer, tmp_path / "run", resume=True).fit()


def test_cli_rejects_bad_evaluate_values(capsys):
    with pytest.raises(SystemExit) as err:
        main(["evaluate", "--embeddings", "x.npz", "--k", "0"])
    assert err.value.code == 2 and "must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--embeddings", "x.npz", "--temperature", "-1"])
    assert "must be > 0" in capsys.readouterr().err


def test_cli_rejects_conflicting_or_bad_pretrain_flags(capsys):
    with pytest.raises(SystemExit) as err:
        main(["pretrain", "fashion_mnist_simclr", "--resume", "--overwrite"])
    assert err.value.code == 2
    assert "--overwrite: not allowed with argument --resume" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["pretrain", "fashion_mnist_simclr", "--nproc", "0"])
    assert err.value.code == 2 and "--nproc: must be >= 1, got 0" in capsys.readouterr().err


def test_cli_recipes_lists_and_prints(capsys):
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    assert "fashion_mnist_simclr" in listing and "fashion_mnist_dino" in listing
    # Each line is the first whole sentence of the recipe's comment, even when it spans lines.
    simclr = next(line for line in listing.splitlines() if line.startswith("fashion_mnist_simclr"))
    assert simclr.endswith("the demo's default (about 5 minutes on 2 CPU cores).")
    # A full stop inside parentheses does not end it.
    gpt = next(line for line in listing.splitlines() if line.startswith("fortunes_causal_lm"))
    assert "(Radford et al. 2019: pre-norm blocks" in gpt and gpt.endswith("from random weights.")
    assert all(line.rstrip().endswith(".") for line in listing.splitlines())
    assert main(["recipes", "fashion_mnist_byol"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["method"]["name"] == "byol"
