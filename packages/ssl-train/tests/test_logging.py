"""Logging and online evaluation: every sink records what the trainer computed, plots decode."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ssl_train import RecipeError, SslTrainError, recipe_from_dict
from ssl_train.data import build_views, epoch_order, load_images
from ssl_train.early_stopping import EarlyStopping
from ssl_train.evaluation import embed_images, knn_top1
from ssl_train.logging import plot_curves
from ssl_train.optim import build_optimizer
from ssl_train.schedule import warmup_cosine
from ssl_train.trainer import Trainer, build_model


def _rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _bare_loop_losses(recipe):
    """The same run written out by hand: no trainer, no logging, no evaluation."""
    torch.set_num_threads(recipe.threads)
    images, _ = load_images(recipe)
    n, batch, total = len(images), recipe.budget.batch_size, recipe.budget.steps
    model = build_model(recipe)
    opt = build_optimizer(model, recipe.optimizer)
    views = build_views(recipe)
    model.train()
    losses = []
    for step in range(total):
        epoch, b = divmod(step, n // batch)
        idx = epoch_order(recipe.seed, epoch, n)[b * batch : (b + 1) * batch]
        for g in opt.param_groups:
            g["lr"] = warmup_cosine(step, total, recipe.optimizer.lr, recipe.schedule.warmup_steps)
        loss = model(list(views(images[idx], idx, epoch)))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.after_optimizer_step(step + 1, total)
        losses.append(loss.item())
    return losses


def _decode(path):
    with Image.open(path) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


def test_every_sink_records_the_trainers_losses_and_evaluations(tiny_tree, tmp_path):
    recipe = recipe_from_dict(tiny_tree, ["threads=1", "evaluation.every_epochs=1", "evaluation.knn_k=20",
                                          "logging.embedding_map_samples=200", "logging.plots=true"])  # fmt: skip
    result = Trainer(recipe, tmp_path / "run").fit()
    rows = _rows(tmp_path / "run")

    # metrics.jsonl: one row per step, the losses an independent hand-written loop computes
    # (so online evaluation, which ran at steps 4 and 6, did not disturb training).
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in rows] == _bare_loop_losses(recipe)
    assert result.final_loss == rows[-1]["loss"]
    assert [r["step"] for r in rows if "knn_top1" in r] == [4, 6]

    # The last evaluation equals kNN top-1 and the collapse monitor recomputed from the final
    # checkpoint through ssl-train's offline evaluation path.
    model = build_model(recipe)
    model.load_state_dict(load_file(str(result.checkpoint / "model.safetensors")))
    bank, bank_y = load_images(recipe, "train")
    heldout, heldout_y = load_images(recipe, "test")
    bank_x, heldout_x = embed_images(model, recipe, bank), embed_images(model, recipe, heldout)
    assert rows[-1]["knn_top1"] == knn_top1(bank_x, bank_y, heldout_x, heldout_y, k=20)
    z = heldout_x / np.linalg.norm(heldout_x, axis=1, keepdims=True)
    assert rows[-1]["collapse_std"] == pytest.approx(z.std(axis=0, ddof=1).mean(), rel=1e-5)
    assert rows[-1]["collapse_std_reference"] == pytest.approx(1 / np.sqrt(heldout_x.shape[1]))
    assert result.evaluation is not None and result.evaluation["knn_top1"] == rows[-1]["knn_top1"]

    # TensorBoard: the same scalars at the same steps (event files store float32).
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    for key, tag in [("loss", "train/loss"), ("lr", "train/lr"), ("knn_top1", "eval/knn_top1"),
                     ("collapse_std", "eval/collapse_std"), ("skipped_steps", "train/skipped_steps")]:  # fmt: skip
        want = [(r["step"], float(np.float32(r[key]))) for r in rows if key in r]
        assert [(e.step, e.value) for e in acc.Scalars(tag)] == want, tag

    # PNG plots decode at their documented sizes and are not blank.
    plots = tmp_path / "run" / "plots"
    for name in ("loss", "lr", "knn_top1", "collapse_std"):
        img = _decode(plots / f"{name}.png")
        assert img.shape == (400, 640, 3), name
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20, name
    emb = _decode(plots / "embedding_map.png")
    assert emb.shape == (700, 800, 3)
    # every one of the 10 classes got its own colour (matplotlib's tab10) somewhere in the map
    tab10 = ["1f77b4", "ff7f0e", "2ca02c", "d62728", "9467bd", "8c564b", "e377c2", "7f7f7f",
             "bcbd22", "17becf"]  # fmt: skip
    present = {tuple(c) for c in np.unique(emb.reshape(-1, 3), axis=0)}
    assert all(tuple(bytes.fromhex(c)) in present for c in tab10)


def test_plot_curves_leave_out_skipped_steps(tmp_path):
    rows = [{"step": 1, "loss": 2.0, "lr": 0.1}, {"step": 2, "loss": None, "lr": 0.2},
            {"step": 3, "loss": float("nan"), "lr": 0.3}, {"step": 4, "loss": 1.0, "lr": 0.4}]  # fmt: skip
    written = plot_curves(rows, tmp_path)
    assert sorted(written) == ["loss", "lr"]  # no evaluation values: no kNN plot
    assert _decode(written["loss"]).shape == (400, 640, 3)


def test_progress_bar_shows_loss_lr_throughput_and_eta(tiny_tree, tmp_path, capsys):
    recipe = recipe_from_dict(tiny_tree, ["logging.progress_bar=true", "logging.plots=false"])
    Trainer(recipe, tmp_path / "run").fit()
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "pretrain tiny" in bar and "6/6" in bar
    loss = float(re.search(r"loss=([0-9.]+)", bar).group(1))
    assert loss == pytest.approx(_rows(tmp_path / "run")[-1]["loss"], abs=1e-4)
    assert re.search(r"lr=[0-9.]+e[-+]\d\d", bar) and re.search(r"img_s=\d+", bar)
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d", bar)  # elapsed<ETA


def test_early_stopping_stops_after_patience_evaluations(tiny_tree, tmp_path):
    recipe = recipe_from_dict(
        tiny_tree,
        ["threads=1", "budget.steps=16", "evaluation.every_epochs=1", "evaluation.early_stopping.monitor=loss",
         "evaluation.early_stopping.patience=1", "evaluation.early_stopping.min_delta=1e9",
         "logging.embedding_map=false", "logging.plots=true"],
    )  # fmt: skip
    result = Trainer(recipe, tmp_path / "run").fit()
    # evaluation at step 4 sets the best mean loss; at step 8 no improvement by 1e9: stop.
    assert result.steps == 8 and result.checkpoint.name == "step-00000008"
    assert result.stopped_early.startswith("early stopping: loss did not improve")
    rows = _rows(tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["early_stopping"]["best_step"] == 4
    assert summary["early_stopping"]["best"] == pytest.approx(
        np.mean([r["loss"] for r in rows[:4]])
    )
    assert (tmp_path / "run" / "plots" / "knn_top1.png").is_file()


def test_early_stopping_counts_evaluations_without_improvement():
    up = EarlyStopping("knn_top1", patience=2, min_delta=0.01)
    assert [up.update(v, s) for s, v in enumerate([0.5, 0.505, 0.6, 0.6, float("nan")])] == [
        False, False, False, False, True,
    ]  # fmt: skip
    assert (up.best, up.best_step) == (0.6, 2)
    down = EarlyStopping("loss", patience=1)
    assert [down.update(v, s) for s, v in enumerate([3.0, 2.0, 2.5])] == [False, False, True]
    assert EarlyStopping("loss").update(9.0, 1) is False  # no patience: never stops
    with pytest.raises(ValueError, match="monitor must be one of"):
        EarlyStopping("accuracy")


def test_mlflow_local_file_store_gets_params_metrics_and_plots(tiny_tree, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    recipe = recipe_from_dict(
        tiny_tree,
        ["logging.mlflow.enabled=true", "logging.embedding_map=false", "logging.plots=true"],
    )
    Trainer(recipe, tmp_path / "run").fit(stop_at_step=3)
    Trainer(recipe, tmp_path / "run", resume=True).fit()  # continues the same MLflow run
    client = mlflow.tracking.MlflowClient((tmp_path / "run" / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["optimizer.lr"] == "0.05" and run.data.params["budget.steps"] == "6"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    rows = _rows(tmp_path / "run")
    assert [(m.step, m.value) for m in history] == [(r["step"], r["loss"]) for r in rows]
    assert "loss.png" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_mlflow_enabled_but_missing_is_a_clear_error(tiny_tree, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    recipe = recipe_from_dict(tiny_tree, ["logging.mlflow.enabled=true"])
    with pytest.raises(SslTrainError, match=r"pip install 'ssl-train\[mlflow\]'"):
        Trainer(recipe, tmp_path / "run").fit()
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before any training


def test_logging_and_evaluation_keys_are_validated(tiny_tree):
    with pytest.raises(
        RecipeError, match=r"logging\.tensorbord: unknown key; allowed: .*tensorboard"
    ):
        recipe_from_dict(tiny_tree, ["logging.tensorbord=false"])
    with pytest.raises(RecipeError, match=r"early_stopping\.monitor: .*'knn_top1'.*got 'accuracy'"):
        recipe_from_dict(tiny_tree, ["evaluation.early_stopping.monitor=accuracy"])
    with pytest.raises(
        RecipeError, match=r"evaluation\.every_epochs: .*greater than or equal to 1"
    ):
        recipe_from_dict(tiny_tree, ["evaluation.every_epochs=0"])
