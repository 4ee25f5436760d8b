"""Masked language modelling under data parallelism and gradient accumulation, for real.

One recipe (BERT-tiny MLM on real WordNet glosses, dropout off so every run computes the same
function) runs in four ways: one process; two ranks under DDP and under FSDP (``torchrun``,
gloo); one process with four accumulated micro-batches. Each rank and micro-batch holds a
different number of masked tokens, so the per-token mean loss of the global batch comes out
only when every token loss is divided by the step's global count (a mean per rank or per
micro-batch weighs tokens unequally). The tokenizer is trained at the start of each run, in its
own process, and comes out the same every time.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from safetensors.torch import load_file

STEPS = 4


def _tree(root) -> dict:
    return {
        "name": "wordnet-mlm-parallel",
        "seed": 0,
        "threads": 1,
        "data": {"dataset": "wordnet", "root": str(root), "max_length": 32},
        "tokenizer": {"train": {"kind": "wordpiece", "vocab_size": 600}},
        "encoder": {"name": "bert_tiny", "max_position_embeddings": 64, "dropout": 0.0},
        "method": {"name": "masked_lm"},
        "optimizer": {"name": "adamw", "lr": 0.001, "weight_decay": 0.01},
        "schedule": {"warmup_steps": 2},
        "budget": {"batch_size": 32, "steps": STEPS},
        "checkpoint": {"every_steps": STEPS},
        "evaluation": {"knn_k": 20, "bank_size": 300, "heldout_size": 100},
        "logging": {"progress_bar": False, "every_steps": 1, "plots": False},
    }


@pytest.fixture(scope="module")
def runs(wordnet_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlm-parallel")
    recipe = tmp / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(_tree(wordnet_root)))
    ways = {
        "one": [],
        "ddp": ["--nproc", "2"],
        "fsdp": ["--nproc", "2", "--set", "distributed.strategy=fsdp"],
        "accumulate": ["--set", "trainer.accumulate_steps=4"],
    }
    out = {}
    for name, extra in ways.items():
        run = tmp / name
        proc = subprocess.run(
            ["ssl-train", "pretrain", str(recipe), "--output", str(run), *extra],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[name] = run
    return out


def _losses(run):
    return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_every_run_trains_the_same_tokenizer(runs):
    files = {name: (run / "tokenizer.json").read_bytes() for name, run in runs.items()}
    assert len(set(files.values())) == 1, "tokenizer training differs between processes"


@pytest.mark.parametrize("way", ["ddp", "fsdp", "accumulate"])
def test_loss_curve_and_weights_equal_one_process(runs, way):
    one, other = _losses(runs["one"]), _losses(runs[way])
    assert len(one) == len(other) == STEPS
    assert other[0] == pytest.approx(one[0], abs=2e-6)  # same weights, same masked tokens
    assert other == pytest.approx(one, abs=2e-5)
    step = f"checkpoints/step-{STEPS:08d}/model.safetensors"
    w1, w2 = load_file(runs["one"] / step), load_file(runs[way] / step)
    assert w1.keys() == w2.keys()
    for k in w1:
        assert (w1[k].double() - w2[k].double()).abs().max().item() < 1e-4, k
