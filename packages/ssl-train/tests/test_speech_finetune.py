"""`ssl-train finetune` on speech runs: spoken digits split by voice, audio folders by class
sub-folder; whole clips, padded with their lengths; on real espeak-ng recordings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from ssl_data.datasets.spoken_digits import VOICES, SpokenDigits
from ssl_train import RecipeError, SslTrainError, recipe_from_dict
from ssl_train.classifier import load_classifier
from ssl_train.cli import main
from ssl_train.data import split_bank_queries
from ssl_train.finetune_data import load_labelled_splits
from ssl_train.recipe import load_recipe
from ssl_train.recipes import shipped_recipes
from ssl_train.trainer import Trainer

#: A 2-block encoder, 2 steps of 8 ragged 0.7 s crops, no online kNN.
FAST = [
    "threads=1", "budget.steps=2", "budget.batch_size=8", "data.crop_seconds=0.7",
    "encoder.num_layers=2", "checkpoint.every_steps=100", "evaluation.every_epochs=null",
    "logging.progress_bar=false", "logging.plots=false", "logging.tensorboard=false",
]  # fmt: skip
FT = ["--set", "threads=1", "--set", "progress_bar=false"]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def speech_run(tmp_path_factory):
    """The shipped wav2vec 2.0 recipe, 2 steps (about 3 s)."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("speech") / "run"
    Trainer(load_recipe(shipped_recipes()["spoken_digits_wav2vec2"], FAST), run).fit()
    return run


@pytest.fixture(scope="module")
def heldout():
    """The held-out voices' clips and digits, found here: voices chosen by a seed-0
    permutation of the 10 voices, clips normalised over their samples in float64."""
    held = np.sort(np.random.default_rng(0).permutation(len(VOICES))[:3])
    digits = SpokenDigits(sample_rate=16000)
    clips, labels = [], []
    for i in range(len(digits)):
        if int(digits.voice_ids[i]) in held:
            clip, label = digits[i]
            x = clip.double()
            clips.append(((x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)).float())
            labels.append(int(label))
    return clips, np.asarray(labels), tuple(digits.classes)


def _finetune(run: Path, out: Path, *args: str) -> dict:
    assert main(["finetune", str(run), "--output", str(out), *args, *FT]) == 0
    return json.loads((out / "finetune_summary.json").read_text())


def _encoder_weights(folder: Path) -> dict[str, torch.Tensor]:
    ckpt = folder / "checkpoints" / (folder / "checkpoints" / "latest").read_text().strip()
    state = load_file(str(ckpt / "model.safetensors"))
    return {k: v for k, v in state.items() if k.startswith("encoder.")}


def _predict_alone(model, clips: list[torch.Tensor]) -> np.ndarray:
    """Logits of each clip on its own (no padding), by the reloaded classifier."""
    with torch.no_grad():
        return np.concatenate([model(c[None]).numpy() for c in clips])


def test_linear_probe_tests_on_heldout_voices_and_reloads_to_its_accuracy(
    speech_run, heldout, tmp_path
):
    clips, digits, names = heldout
    summary = _finetune(speech_run, tmp_path / "ft", "--mode", "linear")
    assert summary["classes"] == 10 and summary["mode"] == "linear"
    assert summary["test_clips"] == 30 and summary["train_clips"] + summary["val_clips"] == 70
    assert summary["val_clips"] == 7 and "voices" in summary["labels_from"]
    ft_recipe = yaml.safe_load((tmp_path / "ft" / "finetune.yaml").read_text())
    assert ft_recipe["budget"]["batch_size"] == 16  # the speech default

    # The test split is exactly the held-out voices' clips (normalised), labelled by digit.
    splits = load_labelled_splits(load_recipe(speech_run / "recipe.yaml"), path=None,
                                  test_fraction=0.2, limit=None, checkpoint=speech_run)  # fmt: skip
    x, lengths = splits.inputs("test", np.arange(30))
    assert lengths.tolist() == [len(c) for c in clips]
    for i, c in enumerate(clips):
        torch.testing.assert_close(x[i, : len(c)], c, rtol=0, atol=1e-6)
        assert not x[i, len(c) :].any()
    np.testing.assert_array_equal(splits.test_labels, digits)
    assert splits.names == names == ("zero", "one", "two", "three", "four", "five", "six",
                                     "seven", "eight", "nine")  # fmt: skip

    # The reloaded checkpoint reproduces the reported test top-1 on clips embedded alone.
    model, meta = load_classifier(tmp_path / "ft")
    assert meta["labels"] == list(names) and meta["mode"] == "linear"
    logits = _predict_alone(model, clips)
    accuracy = float((logits.argmax(1) == digits).mean())
    assert accuracy == pytest.approx(summary["test_top1"], abs=1e-9)
    assert accuracy > 0.1  # above chance for 10 digits, after 2 pretraining steps
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert float((top5 == digits[:, None]).any(1).mean()) == pytest.approx(summary["test_top5"])

    # Linear mode leaves the encoder as pretrained, bit for bit.
    pretrained, tuned = _encoder_weights(speech_run), _encoder_weights(tmp_path / "ft")
    assert pretrained.keys() == tuned.keys()
    assert all(torch.equal(pretrained[k], tuned[k]) for k in pretrained)


def test_full_finetune_trains_the_encoder_on_padded_batches(speech_run, heldout, tmp_path):
    clips, digits, _ = heldout
    summary = _finetune(speech_run, tmp_path / "ft", "--mode", "full", "--set", "budget.epochs=1")
    assert summary["mode"] == "full" and summary["best_epoch"] == 0
    pretrained, tuned = _encoder_weights(speech_run), _encoder_weights(tmp_path / "ft")
    changed = [k for k in pretrained if not torch.equal(pretrained[k], tuned[k])]
    assert "encoder.wav2vec2.encoder.layers.1.attention.q_proj.weight" in changed
    assert "encoder.wav2vec2.feature_extractor.conv_layers.0.conv.weight" in changed

    model, _ = load_classifier(tmp_path / "ft")
    # A ragged padded batch gives each clip the logits it has alone: pooling sees real frames.
    x, lengths = torch.zeros(len(clips), max(map(len, clips))), torch.tensor(list(map(len, clips)))
    for i, c in enumerate(clips):
        x[i, : len(c)] = c
    with torch.no_grad():
        batched = model(x, lengths).numpy()
    alone = _predict_alone(model, clips)
    np.testing.assert_allclose(batched, alone, atol=1e-4)
    assert float((alone.argmax(1) == digits).mean()) == pytest.approx(summary["test_top1"])


@pytest.fixture(scope="module")
def clip_folders(tmp_path_factory):
    """The 100 spoken digits as a flat unlabelled folder and as 10 class sub-folders."""
    root = tmp_path_factory.mktemp("clips")
    digits = SpokenDigits(sample_rate=None)
    for i, path in enumerate(digits.paths):
        folder = root / "labelled" / f"{int(digits.labels[i])}-digit"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / f"{i}.wav")
        (root / "flat").mkdir(exist_ok=True)
        shutil.copy(path, root / "flat" / f"{i}.wav")
    return root, np.asarray(digits.labels)


def _audio_folder_recipe(**data):
    tree = yaml.safe_load(shipped_recipes()["spoken_digits_wav2vec2"].read_text())
    tree["data"] = {"dataset": "audio_folder", **data}
    return recipe_from_dict(tree, FAST)


def test_audio_folder_labels_come_from_class_sub_folders(clip_folders, tmp_path):
    root, _ = clip_folders
    unlabelled = _audio_folder_recipe(path=str(root / "flat"))
    with pytest.raises(SslTrainError) as err:
        load_labelled_splits(unlabelled, path=None, test_fraction=0.2, limit=None,
                             checkpoint=tmp_path)  # fmt: skip
    assert str(err.value).startswith(
        "data.dataset audio_folder has no labels to fine-tune on: the recipe has no "
        "data.eval_path and its data.path has no class sub-folders"
    )
    assert "pass --set data.path=DIR, a folder with one sub-folder of clips per class" in str(
        err.value
    )
    assert not isinstance(err.value, KeyError)

    splits = load_labelled_splits(unlabelled, path=str(root / "labelled"), test_fraction=0.2,
                                  limit=None, checkpoint=tmp_path)  # fmt: skip
    assert splits.names == tuple(f"{d}-digit" for d in range(10)) and splits.unit == "clips"
    # 20% of each class tests, by the seeded per-class split the image folders use.
    labels = np.repeat(np.arange(10), 10)  # the folder's clips in sorted class order
    train, test = split_bank_queries(labels, 0.2)
    np.testing.assert_array_equal(splits.train_labels, labels[train])
    np.testing.assert_array_equal(splits.test_labels, labels[test])
    assert len(splits.test_labels) == 20 and np.bincount(splits.test_labels).tolist() == [2] * 10
    # The recipe's data.eval_path is the default folder.
    labelled = _audio_folder_recipe(path=str(root / "flat"), eval_path=str(root / "labelled"))
    default = load_labelled_splits(labelled, path=None, test_fraction=0.2, limit=None,
                                   checkpoint=tmp_path)  # fmt: skip
    np.testing.assert_array_equal(default.test_labels, splits.test_labels)
    assert default.source.startswith("data.eval_path=")


def test_audio_folder_run_fine_tunes_on_a_labelled_folder(clip_folders, tmp_path, capsys):
    root, _ = clip_folders
    run = tmp_path / "run"
    Trainer(_audio_folder_recipe(path=str(root / "flat")), run).fit()
    capsys.readouterr()
    args = ["finetune", str(run), "--output", str(tmp_path / "ft"), *FT]
    assert main(args) == 2  # the pretraining folder is unlabelled
    assert "pass --set data.path=DIR" in capsys.readouterr().err
    summary = _finetune(run, tmp_path / "ft", "--set", f"data.path={root / 'labelled'}")
    assert summary["test_clips"] == 20 and summary["train_clips"] + summary["val_clips"] == 80
    model, meta = load_classifier(tmp_path / "ft")
    assert meta["labels"] == [f"{d}-digit" for d in range(10)]
    splits = load_labelled_splits(load_recipe(run / "recipe.yaml"), path=str(root / "labelled"),
                                  test_fraction=0.2, limit=None, checkpoint=run)  # fmt: skip
    x, lengths = splits.inputs("test", np.arange(20))
    with torch.no_grad():
        pred = np.asarray([int(model(x[i : i + 1, : lengths[i]]).argmax()) for i in range(20)])
    assert float((pred == splits.test_labels).mean()) == pytest.approx(summary["test_top1"])


def test_speech_runs_that_cannot_be_fine_tuned_say_why(speech_run, tmp_path, capsys):
    spoken_digits = load_recipe(speech_run / "recipe.yaml")
    with pytest.raises(RecipeError, match="spoken_digits has its own labelled split, by voice"):
        load_labelled_splits(spoken_digits, path=str(tmp_path), test_fraction=0.2, limit=None,
                             checkpoint=speech_run)  # fmt: skip
    paired = load_recipe(shipped_recipes()["spoken_words_clip"])
    with pytest.raises(SslTrainError, match="spoken_words is a two-tower"):
        load_labelled_splits(paired, path=None, test_fraction=0.2, limit=None,
                             checkpoint=tmp_path)  # fmt: skip
    capsys.readouterr()
    args = ["finetune", str(speech_run), "--output", str(tmp_path / "ft"), *FT]
    assert main([*args, "--set", "budget.batch_size=64"]) == 2
    assert "63 training clips after holding out 7 for validation, fewer than " \
        "budget.batch_size=64" in capsys.readouterr().err  # fmt: skip
