"""Cross-modal CLIP recipes (spoken words <-> text) through the trainer: the shipped recipe runs,
exact resume, the learned temperature stays in its clamp, retrieval top-1 against an
independent NumPy computation, recipe validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ssl_train import RecipeError
from ssl_train.cli import main
from ssl_train.paired_data import DEFAULT_TEXTS, number_glosses, render_text, retrieval_top1
from ssl_train.recipe import load_recipe
from ssl_train.recipes import shipped_recipes
from ssl_train.trainer import Trainer

#: Small overrides of the shipped recipe: 1 thread, batches of 8 (18 steps per epoch of the 150
#: training pairs), 0.7 s crops, online evaluation at the end only.
FAST = [
    "threads=1", "budget.steps=3", "budget.batch_size=8", "data.crop_seconds=0.7",
    "checkpoint.every_steps=100", "evaluation.every_epochs=1", "logging.progress_bar=false",
    "logging.every_steps=1", "logging.plots=false", "logging.tensorboard=false",
]  # fmt: skip
LOG_MAX = math.log(100.0)


def _recipe(overrides=()):
    return load_recipe(shipped_recipes()["spoken_words_clip"], [*FAST, *overrides])


def _latest(run):
    return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    """The shipped recipe through the CLI, 3 steps."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("clip") / "run"
    args = ["pretrain", "spoken_words_clip", "--output", str(run)]
    assert main(args + [a for o in FAST for a in ("--set", o)]) == 0
    return run


def test_shipped_recipe_trains_and_logs_retrieval(clip_run):
    rows = [json.loads(x) for x in (clip_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in rows)
    last = rows[-1]
    for key in ("retrieval_a2t_top1", "retrieval_t2a_top1", "knn_top1"):
        assert 0.0 <= last[key] <= 1.0
    # 50 held-out clips: every accuracy is a multiple of 1/50 (t2a: of 1/10 over 10 texts)
    assert round(last["retrieval_a2t_top1"] * 50) == pytest.approx(last["retrieval_a2t_top1"] * 50)
    assert round(last["retrieval_t2a_top1"] * 10) == pytest.approx(last["retrieval_t2a_top1"] * 10)
    assert (clip_run / "tokenizer.json").is_file()
    weights = load_file(str(_latest(clip_run) / "model.safetensors"))
    assert any(k.startswith("encoder_b.") for k in weights)  # both towers are saved
    assert any(k.startswith("encoder.") for k in weights)


def test_temperature_stays_in_its_clamp(tmp_path):
    """Start at tau = 0.0101 (scale 99, just under the clamp of 100) with a huge learning rate:
    Adam moves the log-scale by about lr per step, so without the clamp it would leave
    [0, log 100] in one step upward."""
    torch.set_num_threads(1)
    recipe = _recipe(["method.init_temperature=0.0101", "optimizer.lr=1.0",
                      "optimizer.weight_decay=0.0", "schedule.warmup_steps=0",
                      "evaluation.every_epochs=null"])  # fmt: skip
    Trainer(recipe, tmp_path / "run").fit()
    weights = load_file(str(_latest(tmp_path / "run") / "model.safetensors"))
    scale = float(weights["criterion.logit_scale"])
    assert 0.0 <= scale <= LOG_MAX + 1e-6
    assert scale != pytest.approx(math.log(1 / 0.0101), abs=1e-4)  # it was trained


def test_exact_resume(clip_run, tmp_path):
    """Both runs read one tokenizer.json: WordPiece training is not bit-reproducible across
    runs (huggingface/tokenizers#1794), a resume reads the run's own."""
    torch.set_num_threads(1)
    tok = clip_run / "tokenizer.json"
    recipe = _recipe(
        ["budget.steps=4", "evaluation.every_epochs=null", f"tokenizer={{path: {tok}}}"]
    )
    Trainer(recipe, tmp_path / "straight").fit()
    Trainer(recipe, tmp_path / "paused").fit(stop_at_step=2)
    Trainer(recipe, tmp_path / "paused", resume=True).fit()
    a = load_file(str(_latest(tmp_path / "straight") / "model.safetensors"))
    b = load_file(str(_latest(tmp_path / "paused") / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_evaluate_retrieval_matches_numpy(clip_run, tmp_path, capsys):
    npz, out = tmp_path / "emb.npz", tmp_path / "eval.json"
    args = ["evaluate", "--checkpoint", str(clip_run), "--k", "5", "--threads", "1",
            "--save-embeddings", str(npz), "--output", str(out)]  # fmt: skip
    assert main(args) == 0
    result = json.loads(out.read_text())
    f = np.load(npz)
    audio, audio_y, text, text_y = f["audio"], f["audio_labels"], f["text"], f["text_labels"]
    assert audio.shape == (50, 128) and text.shape == (10, 128)
    # independent: explicit loops over cosine similarities
    a2t = np.mean([text_y[int(np.argmax([np.dot(q, t) / np.linalg.norm(q) / np.linalg.norm(t)
                                         for t in text]))] == y for q, y in zip(audio, audio_y)])  # fmt: skip
    t2a = np.mean([audio_y[int(np.argmax([np.dot(t, q) / np.linalg.norm(q) / np.linalg.norm(t)
                                          for q in audio]))] == y for t, y in zip(text, text_y)])  # fmt: skip
    assert result["retrieval_a2t_top1"] == pytest.approx(a2t, abs=1e-12)
    assert result["retrieval_t2a_top1"] == pytest.approx(t2a, abs=1e-12)
    assert result["retrieval_chance_a2t"] == pytest.approx(0.1)
    assert result["retrieval_chance_t2a"] == pytest.approx(0.1)  # 5 voices x 10 words
    # the online evaluation at the last step saw the same weights
    last = json.loads((clip_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["retrieval_a2t_top1"] == pytest.approx(result["retrieval_a2t_top1"], abs=1e-9)
    assert last["retrieval_t2a_top1"] == pytest.approx(result["retrieval_t2a_top1"], abs=1e-9)
    assert "knn_top1_k5" in result


def test_retrieval_top1_values():
    audio = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    text = np.array([[1.0, 0.05], [0.0, 2.0]])
    # clips 0, 2 -> text 0; clip 1 -> text 1; text 0 -> clip 0, text 1 -> clip 1
    assert retrieval_top1(audio, np.array([0, 1, 1]), text, np.array([0, 1])) == (2 / 3, 1.0)
    with pytest.raises(ValueError, match="need"):
        retrieval_top1(audio, np.array([0, 1, 1]), np.zeros((0, 2)), np.zeros(0))


def test_text_side():
    glosses = number_glosses()
    assert glosses[7] == "the cardinal number that is the sum of six and one"
    assert [render_text(t, 7, glosses) for t in DEFAULT_TEXTS] == [
        "seven", "the number seven", "the cardinal number that is the sum of six and one",
    ]  # fmt: skip
    assert render_text("{digit}", 3, glosses) == "3"


def test_other_recipes_resolve_without_the_new_keys():
    for name, path in shipped_recipes().items():
        tree = load_recipe(path).model_dump(mode="json")
        if name == "spoken_words_clip":
            assert tree["text_encoder"]["name"] == "bert_tiny"
            continue
        assert "text_encoder" not in tree and "texts" not in tree["data"], name


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method={name: simclr}"], "method: 'simclr' does not train on pairs"),
        (["method.encoder_b={name: bert_tiny}"], "method.encoder_b are set by the recipe"),
        (["encoder={name: small_cnn}"], "encoder: 'small_cnn' is not a speech encoder"),
        (["text_encoder={name: wav2vec2}"], "text_encoder: 'wav2vec2' is not a text encoder"),
        (["text_encoder=null"], "needs a text tower, e.g. text_encoder: {name: bert_tiny}"),
        (["tokenizer=null"], "spoken_words has text and needs a tokenizer"),
        (["data.texts=['{word} {colour}']"], "template '{word} {colour}' is not valid"),
        (["data.texts=[]"], "data.texts must hold at least one template"),
        (["views={name: span_mask}"], "takes views {name: random_crop}"),
        (["data.crop_seconds=0.01"], "shorter than one encoder frame"),
        (["text_encoder.hidden_size=64"], "bert_tiny fixes hidden_size"),
    ],
)
def test_recipe_errors(overrides, message):
    with pytest.raises(RecipeError) as err:
        _recipe(overrides)
    assert message in str(err.value)


def test_text_encoder_only_for_paired_data():
    path = shipped_recipes()["spoken_digits_wav2vec2"]
    with pytest.raises(RecipeError, match="text_encoder: data.dataset spoken_digits trains one"):
        load_recipe(path, ["text_encoder={name: bert_tiny}"])
    with pytest.raises(RecipeError, match="data.texts not read when data.dataset is spoken_"):
        load_recipe(path, ["data.texts=['{word}']"])
