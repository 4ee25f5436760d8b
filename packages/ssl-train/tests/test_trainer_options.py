"""Trainer options: non-finite losses, gradient clipping, accumulation, bf16 autocast."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from ssl_train import SslTrainError, recipe_from_dict
from ssl_train.trainer import Trainer, build_model


def _weights(run):
    ckpt = sorted((run / "checkpoints").glob("step-*"))[-1]
    return load_file(str(ckpt / "model.safetensors"))


def test_nonfinite_loss_stops_with_a_message_or_is_skipped_and_counted(tiny_tree, tmp_path):
    explode = ["optimizer.lr=1e30", "optimizer.momentum=0", "schedule.warmup_steps=0"]
    with pytest.raises(SslTrainError, match=r"loss is (nan|inf) at step \d; lower optimizer.lr"):
        Trainer(recipe_from_dict(tiny_tree, explode), tmp_path / "stop").fit()
    result = Trainer(
        recipe_from_dict(tiny_tree, [*explode, "trainer.nonfinite=skip"]), tmp_path / "skip"
    ).fit()
    assert result.steps == 6 and result.skipped_steps >= 1
    rows = [json.loads(x) for x in (tmp_path / "skip" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["skipped_steps"] == result.skipped_steps


def test_gradient_clipping_bounds_the_update(tiny_tree, tmp_path):
    recipe = recipe_from_dict(
        tiny_tree,
        ["budget.steps=1", "optimizer.lr=0.1", "optimizer.momentum=0", "optimizer.weight_decay=0",
         "schedule.warmup_steps=0", "trainer.clip_grad_norm=0.01"],
    )  # fmt: skip
    before = {k: v.clone() for k, v in build_model(recipe).state_dict().items()}
    Trainer(recipe, tmp_path / "run").fit()
    after = _weights(tmp_path / "run")
    params = {k for k, _ in build_model(recipe).named_parameters()}
    step = torch.sqrt(sum(((after[k] - before[k]) ** 2).sum() for k in params))
    assert 0 < step <= 0.1 * 0.01 * (1 + 1e-4)  # SGD step = lr x clipped gradient


def test_accumulation_and_bf16_channels_last_train(tiny_tree, tmp_path):
    recipe = recipe_from_dict(
        tiny_tree,
        ["trainer.accumulate_steps=2", "trainer.precision=bf16", "trainer.channels_last=true"],
    )
    result = Trainer(recipe, tmp_path / "run").fit()
    assert result.steps == 6 and torch.isfinite(torch.tensor(result.final_loss))
    assert all(
        torch.isfinite(v).all()
        for v in _weights(tmp_path / "run").values()
        if v.is_floating_point()
    )
    with pytest.raises(SslTrainError, match="does not split into 1 rank"):
        Trainer(recipe_from_dict(tiny_tree, ["trainer.accumulate_steps=3"]), tmp_path / "bad").fit()
