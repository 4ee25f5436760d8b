"""Exact resume: N steps in one go equal N/2 steps, then a NEW process resuming to N."""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ssl_train import recipe_from_dict
from ssl_train.rng_state import RngState
from ssl_train.trainer import Trainer

# Each case stresses one part of the saved state: SGD momentum mid-epoch; AdamW moments, BYOL's
# EMA target network and the momentum schedule at an epoch boundary; torch's global generator
# (ViT dropout draws from it every step).
CASES = {
    "simclr_sgd_mid_epoch": ([], 3),
    "byol_adamw_ema_epoch_boundary": (
        ["method={name: byol, projection_hidden_dim: 32, projection_dim: 16, prediction_hidden_dim: 32}",
         "optimizer={name: adamw, lr: 0.003}"],
        4,
    ),
    "vit_dropout_rng_mid_epoch": (
        ["encoder={name: vit, hidden_size: 32, num_layers: 1, num_heads: 2, image_size: 28, "
         "patch_size: 7, in_channels: 1, pooling: mean, dropout: 0.2}"],
        5,
    ),
}  # fmt: skip
COMMON = [
    "threads=1",  # one thread per process: steadier on a shared 2-core machine
    "budget.steps=8",  # 256 images / 64 per batch: 4 steps per epoch
    "checkpoint.every_steps=100",
    "evaluation.every_epochs=1",
    "evaluation.early_stopping.patience=50",  # counted, never reached: its state must resume too
    "logging.plots=false",
]


def _losses(run):
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r.get("knn_top1")) for r in rows]


def _tensors(run, name):
    ckpt = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    return load_file(str(ckpt / name))


@pytest.mark.parametrize("case", sorted(CASES))
def test_stopped_and_resumed_in_a_new_process_equals_uninterrupted(case, tiny_tree, tmp_path):
    overrides, stop_at = CASES[case]
    recipe = recipe_from_dict(tiny_tree, [*COMMON, *overrides])
    full = Trainer(recipe, tmp_path / "full").fit()
    assert full.steps == 8

    half = Trainer(recipe, tmp_path / "half").fit(stop_at_step=stop_at)
    assert half.steps == stop_at and half.stopped_early == f"stop_at_step={stop_at}"
    assert half.checkpoint.name == f"step-{stop_at:08d}"
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(recipe.to_yaml())
    proc = subprocess.run(
        [sys.executable, "-m", "ssl_train.cli", "pretrain", str(recipe_file),
         "--output", str(tmp_path / "half"), "--resume"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["steps"] == 8

    # Every step's loss (and the kNN evaluations at steps 4 and 8), bit for bit.
    want, got = _losses(tmp_path / "full"), _losses(tmp_path / "half")
    assert [s for s, _, _ in got] == list(range(1, 9))
    assert got == want
    assert [k is not None for _, _, k in got] == [s in (4, 8) for s in range(1, 9)]
    for name in ("model.safetensors", "optimizer.safetensors"):
        a, b = _tensors(tmp_path / "full", name), _tensors(tmp_path / "half", name)
        assert a.keys() == b.keys() and a
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}:{k}"
    summaries = [
        json.loads((tmp_path / r / "train_summary.json").read_text()) for r in ("full", "half")
    ]
    assert summaries[0]["early_stopping"] == summaries[1]["early_stopping"]
    assert summaries[0]["early_stopping"]["best"] is not None


def test_rng_state_round_trips_every_generator():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    saved = RngState.capture()
    first = (random.random(), np.random.rand(), torch.rand(3))
    state = RngState.from_parts(json.loads(json.dumps(saved.to_json())), saved.tensors(), "x")
    random.random(), np.random.rand(), torch.rand(5)  # move every generator on
    state.restore()
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])


def test_resume_never_unpickles(tiny_recipe, tmp_path, monkeypatch):
    Trainer(tiny_recipe, tmp_path / "run").fit(stop_at_step=3)

    def refuse(*_a, **_k):
        raise AssertionError("a checkpoint load unpickled something")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    result = Trainer(tiny_recipe, tmp_path / "run", resume=True).fit()
    assert result.steps == 6
