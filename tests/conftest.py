"""End-to-end fixtures: a tiny real pretraining run through the CLIs, shared by the tests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from ssl_data.datasets import bundled_sample_root
from ssl_train.recipes import shipped_recipes

sys.path.insert(0, str(Path(__file__).parent))  # for helpers.py

from helpers import cli


@pytest.fixture(scope="session")
def pretrained_run(tmp_path_factory) -> Path:
    """A few SimCLR steps of the shipped recipe, on the real Fashion-MNIST sample."""
    tmp = tmp_path_factory.mktemp("e2e")
    recipe = yaml.safe_load(shipped_recipes()["fashion_mnist_simclr"].read_text())
    recipe["data"]["root"] = str(bundled_sample_root())
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = cli(
        "ssl-train", "pretrain", str(path), "--output", str(tmp / "run"),
        "--set", "budget.steps=4", "--set", "budget.batch_size=64", "--set", "threads=2",
        "--set", "logging.progress_bar=false",
    )  # fmt: skip
    assert json.loads(out.strip().splitlines()[-1])["steps"] == 4
    return tmp / "run"
