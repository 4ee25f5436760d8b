"""Robustness: SIGTERM and kill -9 mid-run, corrupt or foreign checkpoints, non-finite losses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import ssl_train.data
from ssl_train import CheckpointError, SslTrainError, recipe_from_dict
from ssl_train.checkpoint import load_checkpoint, resolve_checkpoint
from ssl_train.trainer import Trainer, build_model

EVERY = 4  # checkpoint interval, steps


def _rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]


def _start(recipe_file, run, *extra):
    cmd = [
        sys.executable,
        "-m",
        "ssl_train.cli",
        "pretrain",
        str(recipe_file),
        "--output",
        str(run),
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _wait_for_step(proc, run, step, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"run ended before step {step}: {proc.communicate()[1][-2000:]}"
        try:
            rows = _rows(run)
        except (OSError, json.JSONDecodeError):
            rows = []  # the file is being created or a line is half written
        if rows and rows[-1]["step"] >= step:
            return
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"no step {step} within {timeout} s")


def test_sigterm_then_kill_9_then_resume_loses_nothing(tiny_tree, tmp_path):
    recipe = recipe_from_dict(
        tiny_tree,
        ["threads=1", "budget.batch_size=32", "budget.steps=24", f"checkpoint.every_steps={EVERY}",
         "checkpoint.keep_last=2", "evaluation.every_epochs=null", "logging.plots=false"],
    )  # fmt: skip
    reference = [r["loss"] for r in _rows_of(Trainer(recipe, tmp_path / "ref"), tmp_path / "ref")]
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(recipe.to_yaml())
    run = tmp_path / "run"

    # SIGTERM: the step in flight finishes, then a checkpoint of exactly that step.
    proc = _start(recipe_file, run)
    _wait_for_step(proc, run, 4)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    stopped_at = summary["steps"]
    assert summary["stopped_early"] == "SIGTERM" and 4 <= stopped_at < 24
    assert resolve_checkpoint(run).name == f"step-{stopped_at:08d}"
    assert _rows(run)[-1]["step"] == stopped_at

    # kill -9: no chance to clean up. Only complete checkpoints carry a step-* name.
    proc = _start(recipe_file, run, "--resume")
    _wait_for_step(proc, run, stopped_at + 8)
    assert proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    last_logged = _rows(run)[-1]["step"]
    latest = resolve_checkpoint(run)
    kept = int(latest.name.split("-")[1])
    assert 0 <= last_logged - kept <= EVERY  # nothing lost beyond the checkpoint interval
    for folder in (run / "checkpoints").glob("step-*"):  # every named folder loads and verifies
        state = load_checkpoint(folder, build_model(recipe), None, recipe.sha256())
        assert state.step == int(folder.name.split("-")[1])

    proc = _start(recipe_file, run, "--resume")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1])["steps"] == 24
    assert not list((run / "checkpoints").glob(".*step*"))  # no half-written folder left
    rows = _rows(run)
    assert [r["step"] for r in rows] == list(range(1, 25))  # every step once, none repeated
    assert [r["loss"] for r in rows] == reference  # and the same run as the uninterrupted one

    # TensorBoard dropped the events the killed process wrote past its last checkpoint.
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    events = acc.Scalars("train/loss")
    assert [e.step for e in events] == list(range(1, 25))
    assert [e.value for e in events] == [
        float(torch.tensor(x, dtype=torch.float32)) for x in reference
    ]


def _rows_of(trainer, run):
    trainer.fit()
    return _rows(run)


def test_corrupt_or_foreign_checkpoints_are_refused_naming_file_and_mismatch(tiny_tree, tmp_path):
    recipe = recipe_from_dict(tiny_tree, ["evaluation.every_epochs=null", "logging.plots=false"])
    Trainer(recipe, tmp_path / "run").fit(stop_at_step=3)
    step = tmp_path / "run" / "checkpoints" / "step-00000003"

    def resume_error(run, r=recipe):
        with pytest.raises(CheckpointError) as err:
            Trainer(r, run, resume=True).fit()
        return str(err.value)

    bad = tmp_path / "truncated"
    shutil.copytree(tmp_path / "run", bad)
    weights = bad / "checkpoints" / "step-00000003" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    msg = resume_error(bad)
    assert "step-00000003: corrupt checkpoint (model.safetensors: SHA-256 differs" in msg

    bad = tmp_path / "bad_json"
    shutil.copytree(tmp_path / "run", bad)
    (bad / "checkpoints" / "step-00000003" / "trainer_state.json").write_text('{"step": 3,')
    assert "step-00000003: corrupt checkpoint (trainer_state.json: " in resume_error(bad)

    other = recipe_from_dict(tiny_tree, ["evaluation.every_epochs=null", "logging.plots=false",
                                         "encoder.widths=[8, 32]"])  # fmt: skip
    msg = resume_error(tmp_path / "run", other)
    assert "different recipe (encoder.widths: [8, 16] -> [8, 32])" in msg and str(step) in msg

    with pytest.raises(
        CheckpointError, match=r"(?s)model\.safetensors does not fit the model: .*size mismatch"
    ):
        load_checkpoint(step, build_model(other), None, recipe.sha256())

    # A dangling `latest` (writer killed between two renames) falls back to the newest
    # complete folder; a half-written hidden folder is removed on resume.
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step-00000099\n")
    stale = tmp_path / "run" / "checkpoints" / ".step-00000004.abc123"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    assert resolve_checkpoint(tmp_path / "run") == step
    assert Trainer(recipe, tmp_path / "run", resume=True).fit().steps == 6
    assert not stale.exists()


@pytest.fixture
def poisoned_step(monkeypatch):
    """Make the views of the third optimiser step all-NaN (so its loss is NaN)."""
    real = ssl_train.data.build_views

    def build(recipe):
        gen, calls = real(recipe), [0]

        def views(images, idx, epoch):
            calls[0] += 1
            out = gen(images, idx, epoch)
            return [torch.full_like(v, float("nan")) for v in out] if calls[0] == 3 else out

        return views

    monkeypatch.setattr(ssl_train.data, "build_views", build)


def test_nonfinite_loss_is_skipped_without_touching_any_state_or_stops(
    tiny_tree, tmp_path, poisoned_step
):
    base = ["budget.steps=5", "checkpoint.every_steps=1", "checkpoint.keep_last=10",
            "evaluation.every_epochs=null", "logging.plots=false"]  # fmt: skip
    with pytest.raises(SslTrainError, match=r"loss is nan at step 2; lower optimizer\.lr"):
        Trainer(recipe_from_dict(tiny_tree, base), tmp_path / "stop").fit()
    assert resolve_checkpoint(tmp_path / "stop").name == "step-00000002"

    result = Trainer(
        recipe_from_dict(tiny_tree, [*base, "trainer.nonfinite=skip"]), tmp_path / "skip"
    ).fit()
    assert result.steps == 5 and result.skipped_steps == 1
    rows = _rows(tmp_path / "skip")
    assert [r["loss"] is None for r in rows] == [False, False, True, False, False]
    assert [r["skipped_steps"] for r in rows] == [0, 0, 1, 1, 1]
    ckpts = tmp_path / "skip" / "checkpoints"
    for name in ("model.safetensors", "optimizer.safetensors"):
        before = load_file(str(ckpts / "step-00000002" / name))
        after = load_file(str(ckpts / "step-00000003" / name))
        # weights, batch-norm statistics (num_batches_tracked too) and momentum: untouched
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before), name
    final = load_file(str(ckpts / "step-00000005" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in final.values() if v.is_floating_point())
    assert os.path.exists(ckpts / "step-00000004")
