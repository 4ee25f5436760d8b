"""DDP under real torchrun (2 CPU processes, gloo) against one process on the same global batch."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from ssl_train import recipe_from_dict

METHODS = {
    "simclr": {"name": "simclr", "projection_hidden_dim": 32, "projection_dim": 16, "temperature": 0.5,
               "gather_distributed": True},
    "byol": {"name": "byol", "projection_hidden_dim": 32, "projection_dim": 16, "prediction_hidden_dim": 32},
}  # fmt: skip


def _pretrain(recipe_path, output, *extra):
    proc = subprocess.run(
        ["ssl-train", "pretrain", str(recipe_path), "--output", str(output), *extra],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [
        json.loads(line)["loss"] for line in (output / "metrics.jsonl").read_text().splitlines()
    ]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_two_ranks_follow_the_one_rank_loss_curve_and_resume_on_one(method, tiny_tree, tmp_path):
    tree = {**tiny_tree, "method": METHODS[method], "threads": 1}
    tree["budget"] = {"batch_size": 64, "steps": 4}
    tree["checkpoint"] = {"every_steps": 2, "keep_last": 3}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(recipe_from_dict(tree).to_yaml())
    assert yaml.safe_load(recipe.read_text())["distributed"]["sync_batchnorm"] is True

    one = _pretrain(recipe, tmp_path / "one")
    two = _pretrain(recipe, tmp_path / "two", "--nproc", "2")
    assert len(one) == len(two) == 4
    assert two == pytest.approx(one, abs=1e-4)
    assert one[0] == pytest.approx(two[0], abs=1e-6)  # same weights, same global batch

    # The 2-rank checkpoint at step 2 resumes in one process and continues the same curve.
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "two", resumed)
    (resumed / "metrics.jsonl").unlink()
    (resumed / "checkpoints" / "latest").write_text("step-00000002\n")
    tail = _pretrain(recipe, resumed, "--resume")
    assert tail == pytest.approx(two[2:], abs=1e-4)
