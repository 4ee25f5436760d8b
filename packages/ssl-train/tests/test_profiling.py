"""StepProfiler: the trace holds the four phases; the summary's times are the phases' own."""

from __future__ import annotations

import json
import time

import pytest
import torch

from ssl_train.profiling import PHASES, StepProfiler, format_summary


def test_profiles_the_chosen_steps_and_times_each_phase(tmp_path):
    prof = StepProfiler(tmp_path / "profile", steps=2, skip=1)
    model = torch.nn.Linear(64, 64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    summaries = []
    for _ in range(5):
        prof.begin_step()
        with prof.phase("data"):
            time.sleep(0.1)  # a slow loader: 100 ms per step
            x = torch.randn(32, 64)
        with prof.phase("forward"):
            loss = model(x).pow(2).mean()
        with prof.phase("backward"):
            loss.backward()
        with prof.phase("optimizer"):
            opt.step()
            opt.zero_grad()
        summaries.append(prof.end_step())
    assert summaries[:2] == [None, None] and summaries[3:] == [None, None]
    summary = summaries[2]
    assert summary is not None and summary["first_step"] == 2 and summary["steps"] == 2
    ms, share = summary["ms_per_step"], summary["share"]
    assert 100.0 <= ms["data"] < 100.0 + 80.0  # the sleep, per recorded step
    assert all(ms[k] > 0 for k in PHASES)
    assert sum(share.values()) == pytest.approx(1.0, abs=1e-3)
    assert share["data"] == max(share.values())
    trace = json.loads((tmp_path / "profile" / "trace.json").read_text())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert set(PHASES) <= names
    assert any((tmp_path / "profile" / "tensorboard").iterdir())
    assert json.loads((tmp_path / "profile" / "summary.json").read_text()) == summary
    assert "data" in format_summary(summary) and "trace.json" in format_summary(summary)


def test_phases_outside_the_recording_cost_nothing_and_bad_arguments_fail(tmp_path):
    prof = StepProfiler(tmp_path, steps=1, skip=3)
    prof.begin_step()
    assert not prof.recording
    with prof.phase("data"):
        pass
    assert prof.totals["data"] == 0.0
    with pytest.raises(ValueError, match="steps >= 1"):
        StepProfiler(tmp_path, steps=0)


def _losses(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_trainer_profiles_without_changing_the_run(tiny_recipe, tmp_path, caplog):
    from ssl_train.cli import build_parser
    from ssl_train.trainer import Trainer

    assert (
        build_parser().parse_args(["pretrain", "r.yaml", "--profile-steps", "2"]).profile_steps == 2
    )
    Trainer(tiny_recipe, tmp_path / "plain").fit()
    with caplog.at_level("INFO", logger="ssl_train"):
        Trainer(tiny_recipe, tmp_path / "profiled", profile_steps=2).fit()
    assert _losses(tmp_path / "profiled") == _losses(tmp_path / "plain")  # same run, bit for bit
    summary = json.loads((tmp_path / "profiled" / "profile" / "summary.json").read_text())
    assert summary["first_step"] == 2 and summary["steps"] == 2
    assert all(summary["ms_per_step"][k] > 0 for k in PHASES)
    assert sum(summary["share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert "profile of steps 2..3" in caplog.text
    assert not (tmp_path / "plain" / "profile").exists()
