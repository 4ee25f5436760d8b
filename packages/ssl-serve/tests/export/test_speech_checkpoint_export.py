"""A speech pretraining checkpoint (ssl-train's layout: recipe.yaml + model.safetensors with
``encoder.`` keys) exported by `ssl-serve export RUN`, dispatched on the recipe's dataset."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
import yaml

import ssl_models
from ssl_serve.bundle import read_bundle
from ssl_serve.cli import main
from ssl_serve.errors import CheckpointError, InvalidInputError
from ssl_serve.export import (
    default_validation_recordings,
    export_checkpoint,
    export_speech_checkpoint,
    is_speech_checkpoint,
    zero_mean_unit_var,
)
from ssl_serve.preprocess import pad_audio, preprocess_audio

ENCODER = {
    "name": "wav2vec2", "hidden_size": 32, "num_layers": 2, "num_heads": 2,
    "intermediate_size": 64, "conv_dim": [16, 32, 32, 32], "conv_kernel": [10, 8, 4, 4],
    "conv_stride": [5, 4, 4, 4], "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4, "dropout": 0.1,
}  # fmt: skip


def _write_run(run: Path, dataset: str = "spoken_digits") -> Path:
    """A run folder as ssl-train writes it after 7 steps of a HuBERT recipe."""
    torch.manual_seed(0)
    method = ssl_models.build_method(
        {"name": "hubert", "num_clusters": 8}, ssl_models.build_encoder(ENCODER)
    )
    step = run / "checkpoints" / "step-00000007"
    step.mkdir(parents=True)
    recipe = {"name": "speech", "seed": 0,
              "data": {"dataset": dataset, "root": None, "limit": None, "sample_rate": 16000,
                       "crop_seconds": 1.0, "voices": None, "heldout_voices": 3},
              "encoder": ENCODER, "method": {"name": "hubert", "num_clusters": 8}}  # fmt: skip
    text = yaml.safe_dump(recipe, sort_keys=False)
    (run / "recipe.yaml").write_text(text)
    (step / "recipe.yaml").write_text(text)
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in method.state_dict().items()}, str(step / "model.safetensors")
    )
    (step / "trainer_state.json").write_text(json.dumps({"step": 7}))
    (run / "checkpoints" / "latest").write_text(step.name)
    return run


@pytest.fixture(scope="module")
def recordings() -> list[Path]:
    files = default_validation_recordings()
    # The first and last default recordings (here a 16 kHz LibriVox utterance and an 8 kHz
    # Asterisk prompt, which the server resamples).
    return [files[0], files[-1]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, recordings):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("speech")
    run = _write_run(tmp / "run")
    args = ["export", str(run), "--repository", str(tmp / "models"), "--name", "speech",
            "--validation-audio", *map(str, recordings)]  # fmt: skip
    assert main(args) == 0
    return run, tmp / "models" / "speech" / "1"


def test_cli_exports_a_speech_run_as_an_audio_bundle(exported) -> None:
    run, bundle_dir = exported
    assert is_speech_checkpoint(run)
    bundle = read_bundle(bundle_dir)
    assert bundle.modality == "audio" and bundle.embedding_dim == 32
    prep = bundle.preprocessing
    assert prep.sample_rate == 16000 and prep.pooling == "mean" and prep.normalize
    assert prep.samples_per_frame == 320 and prep.min_samples == 345  # the recipe's convolutions
    recipe = (run / "recipe.yaml").read_bytes()
    assert (bundle_dir / "recipe.yaml").read_bytes() == recipe
    raw = json.loads((bundle_dir / "bundle.json").read_text())
    assert raw["provenance"]["recipe_sha256"] == hashlib.sha256(recipe).hexdigest()
    assert raw["provenance"]["step"] == 7 and raw["provenance"]["checkpoint"] == "step-00000007"
    assert raw["validation"]["max_abs_diff"] < 1e-4 and raw["validation"]["num_inputs"] == 2


def test_served_embedding_equals_pytorch_on_the_same_clip(exported, recordings) -> None:
    # What the server does (decode, resample, pad, onnxruntime) vs the checkpoint's encoder in
    # PyTorch on the same clip alone, normalised as in training.
    run, bundle_dir = exported
    prep = read_bundle(bundle_dir).preprocessing
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(bundle_dir / "model.onnx"), options,
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    encoder = ssl_models.build_encoder(ENCODER)
    state = safetensors.torch.load_file(str(run / "checkpoints/step-00000007/model.safetensors"))
    encoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
    encoder.eval()
    clips = [preprocess_audio(f.read_bytes(), prep) for f in recordings]
    served = session.run(None, pad_audio(clips))[0]  # both clips in one padded batch
    for clip, row in zip(clips, served, strict=True):
        with torch.no_grad():
            ref = F.normalize(encoder(torch.from_numpy(zero_mean_unit_var(clip))[None]), dim=1)
        assert np.abs(row - ref[0].numpy()).max() < 1e-4


def test_export_checkpoint_dispatches_on_the_dataset(exported, tmp_path) -> None:
    run, _ = exported
    with pytest.raises(InvalidInputError, match="not offered for speech checkpoints"):
        export_checkpoint(run, tmp_path / "b", name="speech", quantize="int8")
    image_run = tmp_path / "image"
    _write_run(image_run, dataset="fashion_mnist")
    assert not is_speech_checkpoint(image_run)
    with pytest.raises(CheckpointError, match="data.dataset is 'fashion_mnist', not a speech"):
        export_speech_checkpoint(image_run, tmp_path / "c", name="x")


def test_a_speech_classifier_checkpoint_is_refused_not_exported_headless(exported, tmp_path):
    """A fine-tuned speech classifier (classifier.json beside the weights) would export as a
    plain encoder bundle with its head silently dropped: refused with the reason instead."""
    run, _ = exported
    classifier = tmp_path / "classifier"
    shutil.copytree(run / "checkpoints" / "step-00000007", classifier)
    (classifier / "classifier.json").write_text(json.dumps({"labels": ["0", "1"]}))
    with pytest.raises(CheckpointError, match="fine-tuned speech classifier"):
        export_speech_checkpoint(classifier, tmp_path / "b", name="x")
    assert not (tmp_path / "b").exists()
