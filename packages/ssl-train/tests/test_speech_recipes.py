"""Speech recipes through the trainer: shipped recipes run, exact resume, HuBERT targets kept,
kNN evaluation by voice, recipe validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import ssl_models
from ssl_data.datasets.spoken_digits import VOICES, SpokenDigits
from ssl_train import RecipeError, recipe_from_dict
from ssl_train.cli import main
from ssl_train.recipe import DATASET_KEYS, SPEECH_DATASETS, load_recipe
from ssl_train.recipes import shipped_recipes
from ssl_train.trainer import Trainer

STEPS = 4
#: Small overrides of the shipped recipes: a 2-block encoder, 0.7 s crops (the clips last
#: 0.55-0.82 s: a ragged batch), batches of 8 (8
#: steps per epoch of the 70 pretraining clips), online kNN at the end only.
FAST = [
    "threads=1", f"budget.steps={STEPS}", "budget.batch_size=8", "data.crop_seconds=0.7",
    "encoder.num_layers=2", "checkpoint.every_steps=100", "evaluation.every_epochs=1",
    "logging.progress_bar=false", "logging.every_steps=1", "logging.plots=false",
]  # fmt: skip
HUBERT_FAST = [*FAST, "method.num_clusters=16"]


def _rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _latest(run):
    return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()


def _recipe(name, overrides):
    return load_recipe(shipped_recipes()[name], overrides)


@pytest.fixture(scope="module")
def w2v_run(tmp_path_factory):
    """The shipped wav2vec 2.0 recipe through the CLI, 4 steps."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("w2v") / "run"
    args = ["pretrain", "spoken_digits_wav2vec2", "--output", str(run)]
    assert main(args + [a for o in FAST for a in ("--set", o)]) == 0
    return run


@pytest.fixture(scope="module")
def hubert_run(tmp_path_factory):
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("hubert") / "run"
    Trainer(_recipe("spoken_digits_hubert", HUBERT_FAST), run).fit()
    return run


def test_shipped_speech_recipes_are_listed(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "spoken_digits_wav2vec2" in out and "spoken_digits_hubert" in out


def test_wav2vec2_run_logs_finite_losses_and_online_knn(w2v_run):
    rows = _rows(w2v_run)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert rows[-1]["clips_per_s"] > 0 and 0 <= rows[-1]["knn_top1"] <= 1
    # At initialisation the contrastive term is about a uniform guess among the true latent and
    # K = 20 distractors, ln 21 = 3.04, plus 0.1 x a diversity loss in [0, 1]; a loss over
    # padded frames, a wrong K or an unmasked target would land elsewhere.
    assert abs(rows[0]["loss"] - math.log(21)) < 0.4, rows[0]["loss"]
    # the method's own terms are logged beside the loss; the recipe anneals the Gumbel
    # temperature 2 -> 0.5 over the whole run, so step k's loss used 2 * 0.25 ** ((k - 1) / 4)
    for k, row in enumerate(rows, start=1):
        assert row["loss"] == pytest.approx(row["contrastive"] + 0.1 * row["diversity"], rel=1e-5)
        assert row["gumbel_temperature"] == pytest.approx(2 * 0.25 ** ((k - 1) / STEPS))
        assert 2 * 1.5 < row["perplexity"] <= 2 * 320
    summary = json.loads((w2v_run / "train_summary.json").read_text())
    assert summary["steps"] == STEPS and "clips_per_s" in summary
    examples = load_file(str(_latest(w2v_run) / "example_inputs.safetensors"))
    x, lengths = examples["input_values"], examples["lengths"]
    assert x.shape == (64, int(lengths.max())) and lengths.min() > 0
    real = x[0, : lengths[0]].double()  # whole clips, normalised over their real samples
    assert abs(real.mean().item()) < 1e-5 and abs(real.std(unbiased=False).item() - 1) < 1e-4
    assert torch.all(x[0, lengths[0] :] == 0)


def test_a_collapsed_codebook_is_warned_about_once(tmp_path, caplog):
    # One codeword per codebook is the collapsed state by construction: perplexity = G = 2.
    recipe = _recipe("spoken_digits_wav2vec2", [*FAST, "budget.steps=3", "evaluation.every_epochs=null",
                                                "method.num_codevectors_per_group=1"])  # fmt: skip
    with caplog.at_level("WARNING", logger="ssl_train"):
        Trainer(recipe, tmp_path / "run").fit()
    warnings = [r.getMessage() for r in caplog.records if "codebook collapse" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("step 1: ") and "perplexity 2.00 of 2 codewords" in warnings[0]
    assert "method.gumbel_anneal_fraction" in warnings[0]
    assert [r["perplexity"] for r in _rows(tmp_path / "run")] == pytest.approx([2.0] * 3)


def test_padded_batches_mask_only_real_frames(w2v_run):
    from ssl_data.audio import conv_output_lengths
    from ssl_train.speech_data import SpeechData, load_speech_corpus

    recipe = load_recipe(w2v_run / "recipe.yaml")
    data = SpeechData(recipe, load_speech_corpus(recipe))
    idx = np.arange(8)
    x, lengths, mask = data.batch(idx, 0)
    assert x.shape[1] == int(lengths.max()) <= round(0.7 * 16000)
    assert len(set(lengths.tolist())) > 1  # clips shorter than the crop: a ragged batch
    frames = conv_output_lengths(lengths.numpy(), (10, 8, 4, 4), (5, 4, 4, 4))
    for b in range(len(idx)):
        assert not mask[b, frames[b] :].any() and mask[b, : frames[b]].sum() >= 2
    again = data.batch(idx, 0)
    assert all(torch.equal(a, b) for a, b in zip([x, lengths, mask], again, strict=True))
    assert not torch.equal(data.batch(idx, 1)[2], mask)  # a new epoch draws new masks


def test_wav2vec2_resume_is_exact(w2v_run, tmp_path):
    recipe = load_recipe(w2v_run / "recipe.yaml")
    half = Trainer(recipe, tmp_path / "half").fit(stop_at_step=STEPS // 2)
    assert half.steps == STEPS // 2
    Trainer(recipe, tmp_path / "half", resume=True).fit()
    want = [(r["step"], r["loss"], r.get("knn_top1")) for r in _rows(w2v_run)]
    got = [(r["step"], r["loss"], r.get("knn_top1")) for r in _rows(tmp_path / "half")]
    assert got == want
    a = load_file(str(_latest(w2v_run) / "model.safetensors"))
    b = load_file(str(_latest(tmp_path / "half") / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_hubert_targets_fitted_once_and_resume_is_exact(hubert_run, tmp_path):
    from ssl_train.speech_data import HUBERT_TARGETS_FILE

    targets = load_file(str(hubert_run / HUBERT_TARGETS_FILE))
    assert targets["centers"].shape == (16, 39)
    rows = _rows(hubert_run)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert all(math.isfinite(r["loss"]) for r in rows) and 0 <= rows[-1]["knn_top1"] <= 1
    recipe = _recipe("spoken_digits_hubert", HUBERT_FAST)
    Trainer(recipe, tmp_path / "half").fit(stop_at_step=STEPS // 2)
    file = tmp_path / "half" / HUBERT_TARGETS_FILE
    # The resume must read the run's targets, not fit new ones: replace them by the full run's
    # (fitted from the same frames and seed) and check the file is left as it is.
    file.write_bytes((hubert_run / HUBERT_TARGETS_FILE).read_bytes())
    before = file.stat().st_mtime_ns
    Trainer(recipe, tmp_path / "half", resume=True).fit()
    assert file.stat().st_mtime_ns == before
    want = [(r["step"], r["loss"]) for r in rows]
    assert [(r["step"], r["loss"]) for r in _rows(tmp_path / "half")] == want


def _reference_knn_top1(bank, bank_y, queries, query_y, k, temperature):
    """Weighted kNN (cosine, votes exp(cos / T)) in plain numpy, float64."""
    a = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sim = q @ a.T
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    votes = np.zeros((len(q), 10))
    for i in range(len(q)):
        np.add.at(votes[i], bank_y[top[i]], np.exp(sim[i, top[i]] / temperature))
    return float((votes.argmax(axis=1) == query_y).mean())


def test_evaluate_splits_by_voice_and_equals_online_knn(w2v_run, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(w2v_run), "--k", "5", "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["memory_bank"] == 70 and result["queries"] == 30
    assert 0 <= result["knn_top1_k5"] <= 1
    assert result["knn_top1_k5"] == _rows(w2v_run)[-1]["knn_top1"]  # the online figure

    # Independently: 3 voices held out by a seed-0 permutation, each clip normalised and
    # embedded alone (no padding) by the checkpoint's encoder, kNN in numpy.
    held = set(np.random.default_rng(0).permutation(len(VOICES))[:3].tolist())
    digits = SpokenDigits(sample_rate=16000)
    recipe = yaml.safe_load((w2v_run / "recipe.yaml").read_text())
    encoder = ssl_models.build_encoder(recipe["encoder"])
    method = ssl_models.build_method(recipe["method"], encoder)
    method.load_state_dict(load_file(str(_latest(w2v_run) / "model.safetensors")))
    method.eval()
    feats, labels, query = [], [], []
    with torch.no_grad():
        for i in range(len(digits)):
            clip, label = digits[i]
            x = clip.double()
            x = ((x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)).float()
            feats.append(method.embed(x[None]).numpy()[0].astype(np.float64))
            labels.append(label)
            query.append(int(digits.voice_ids[i]) in held)
    feats, labels, query = np.stack(feats), np.asarray(labels), np.asarray(query)
    reference = _reference_knn_top1(feats[~query], labels[~query], feats[query], labels[query],
                                    5, 0.1)  # fmt: skip
    assert result["knn_top1_k5"] == reference


def _error(tree, *overrides):
    with pytest.raises(RecipeError) as err:
        recipe_from_dict(tree, list(overrides))
    return str(err.value)


def test_validation_errors_name_the_allowed_values(tiny_tree):
    speech = yaml.safe_load(shipped_recipes()["spoken_digits_wav2vec2"].read_text())
    msg = _error(speech, "method={name: simclr}")
    assert "method: 'simclr' is not a speech method" in msg and "wav2vec2, hubert" in msg
    msg = _error(speech, "encoder={name: small_cnn}")
    assert "'small_cnn' is not a speech encoder" in msg and "'wav2vec2'" in msg
    msg = _error(speech, "views={name: simclr}")
    assert "'simclr' is not a speech view generator" in msg and "span_mask" in msg
    assert "mask_prob" in _error(speech, "views={name: span_mask, mask_prob: 1.5}")
    assert "data.image_size not read when data.dataset is spoken_digits" in _error(
        speech, "data.image_size=32"
    )
    msg = _error(speech, "data.crop_seconds=0.01")
    assert "160 samples at 16000 Hz, shorter than one encoder frame (345 samples)" in msg
    msg = _error({**speech, "tokenizer": {"path": "x.json"}})
    assert "data.dataset spoken_digits is speech; tokenizer is for text" in msg
    # The reverse: a speech method or encoder on images names the image methods.
    msg = _error(tiny_tree, "method={name: wav2vec2}")
    assert "method 'wav2vec2' is for speech" in msg and "simclr" in msg and "byol" in msg
    msg = _error(tiny_tree, "encoder={name: wav2vec2}")
    assert "encoder 'wav2vec2' is for speech" in msg
    msg = _error({**speech, "data": {"dataset": "audio_folder"}},
                 "evaluation.early_stopping.patience=2")  # fmt: skip
    assert "audio_folder run makes only with a labelled data.eval_path" in msg


def test_audio_folder_needs_its_path(tmp_path):
    tree = yaml.safe_load(shipped_recipes()["spoken_digits_wav2vec2"].read_text())
    tree["data"] = {"dataset": "audio_folder"}
    recipe = recipe_from_dict(tree)  # the folder is checked when the data are loaded
    with pytest.raises(RecipeError, match="data.path is not set: data.dataset audio_folder"):
        Trainer(recipe, tmp_path / "run").fit()
    missing = recipe_from_dict(tree, [f"data.path={tmp_path / 'nope'}"])
    with pytest.raises(RecipeError, match="data.path: folder .*nope does not exist"):
        Trainer(missing, tmp_path / "run").fit()


def test_speech_defaults_resolve_and_other_recipes_keep_their_keys():
    tree = {"data": {"dataset": "spoken_digits"}, "encoder": {"name": "wav2vec2"},
            "method": {"name": "hubert"}, "budget": {"steps": 1}}  # fmt: skip
    r = recipe_from_dict(tree)
    assert r.views == {"name": "span_mask", "mask_prob": 0.8}
    assert r.encoder["hidden_size"] == 128 and r.encoder["conv_stride"] == [5, 4, 4, 4]
    assert set(r.model_dump()["data"]) == {"dataset", "limit", *DATASET_KEYS["spoken_digits"]}
    speech_only = {"sample_rate", "crop_seconds", "voices", "heldout_voices"}
    for name, path in shipped_recipes().items():
        recipe = load_recipe(path)
        if recipe.data.dataset in SPEECH_DATASETS:
            continue
        assert not speech_only & set(recipe.model_dump()["data"]), name
        assert "sample_rate" not in recipe.to_yaml(), name


def test_audio_folder_run_trains_and_evaluates_its_labelled_folder(tmp_path, capsys):
    import shutil

    digits = SpokenDigits(sample_rate=None)
    (tmp_path / "clips" / "nested").mkdir(parents=True)
    for i, path in enumerate(digits.paths[:40]):  # unlabelled, at any depth
        shutil.copy(path, tmp_path / "clips" / ("nested" if i % 2 else "") / f"{i}.wav")
    for i, path in enumerate(digits.paths):  # labelled: one sub-folder per digit
        folder = tmp_path / "labelled" / f"{int(digits.labels[i])}-digit"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / f"{i}.wav")
    tree = yaml.safe_load(shipped_recipes()["spoken_digits_wav2vec2"].read_text())
    tree["data"] = {"dataset": "audio_folder", "path": str(tmp_path / "clips"),
                    "eval_path": str(tmp_path / "labelled"), "eval_test_fraction": 0.3}  # fmt: skip
    recipe = recipe_from_dict(tree, [o for o in FAST if not o.startswith("budget.steps")]
                              + ["budget.steps=2"])  # fmt: skip
    result = Trainer(recipe, tmp_path / "run").fit()
    assert result.steps == 2 and math.isfinite(result.final_loss)
    assert result.evaluation is not None and 0 <= result.evaluation["knn_top1"] <= 1
    capsys.readouterr()
    run = str(tmp_path / "run")
    assert main(["evaluate", "--checkpoint", run, "--k", "5", "--threads", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["memory_bank"] == 70 and out["queries"] == 30  # 30% of each digit's 10 clips
    assert out["knn_top1_k5"] == result.evaluation["knn_top1"]
