"""A speech checkpoint (ssl-train's layout: recipe.yaml + model.safetensors with
``encoder.`` keys) exported by `ssl-serve export RUN`, dispatched on the recipe's dataset."""

from __future__ import annotations

import asyncio
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


#: ssl-train's shipped wav2vec 2.0 recipe cut to 2 steps of 8 ragged 0.7 s crops, 2 blocks.
FAST = [
    "threads=1", "budget.steps=2", "budget.batch_size=8", "data.crop_seconds=0.7",
    "encoder.num_layers=2", "checkpoint.every_steps=100", "evaluation.every_epochs=null",
    "logging.progress_bar=false", "logging.plots=false", "logging.tensorboard=false",
]  # fmt: skip


@pytest.fixture(scope="module")
def speech_classifier(tmp_path_factory, recordings):
    """A real speech classifier: ssl-train pretrains the shipped spoken-digits wav2vec 2.0
    recipe (2 steps on espeak-ng recordings), fine-tunes a linear probe with batch norm on the
    digits (ssl_train.finetune.Finetuner), and `ssl-serve export` writes its bundle."""
    pytest.importorskip("ssl_train")
    from ssl_train.finetune import Finetuner, finetune_recipe
    from ssl_train.recipe import load_recipe
    from ssl_train.recipes import shipped_recipes
    from ssl_train.trainer import Trainer

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("speech-classifier")
    Trainer(load_recipe(shipped_recipes()["spoken_digits_wav2vec2"], FAST), tmp / "run").fit()
    recipe = finetune_recipe({"threads": 1, "progress_bar": False, "budget": {"epochs": 4}})
    result = Finetuner(tmp / "run", recipe, tmp / "ft").fit()
    args = ["export", str(tmp / "ft"), "--repository", str(tmp / "models"), "--name", "digits",
            "--validation-audio", *map(str, recordings)]  # fmt: skip
    assert main(args) == 0
    return result.checkpoint, tmp / "models"


def _pytorch_probabilities(checkpoint: Path, clips: list[np.ndarray]) -> np.ndarray:
    """ssl-train's own classifier (load_classifier: encoder + head, batch norm unfolded) on
    each clip alone, normalised as fine-tuning fed it; softmax of its logits."""
    from ssl_train.classifier import load_classifier

    model, _ = load_classifier(checkpoint)
    with torch.no_grad():
        rows = [torch.softmax(model(torch.from_numpy(zero_mean_unit_var(c))[None]), dim=1)
                for c in clips]  # fmt: skip
    return torch.cat(rows).numpy()


def _onnx_outputs(bundle_dir: Path, clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """In-process onnxruntime on the bundle: both outputs of one padded batch of ``clips``."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(bundle_dir / "model.onnx"), options,
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    embedding, probabilities = session.run(["embedding", "probabilities"], pad_audio(clips))
    return embedding, probabilities


def test_a_fine_tuned_speech_classifier_exports_labels_and_probabilities(
    speech_classifier, recordings, tmp_path
):
    checkpoint, models = speech_classifier
    bundle_dir = models / "digits" / "1"
    bundle = read_bundle(bundle_dir)
    meta = json.loads((checkpoint / "classifier.json").read_text())
    assert bundle.modality == "audio" and bundle.is_classifier
    assert bundle.labels == tuple(meta["labels"]) == ("zero", "one", "two", "three", "four",
                                                       "five", "six", "seven", "eight", "nine")  # fmt: skip
    assert [(o.name, o.shape) for o in bundle.outputs] == [
        ("embedding", ("batch", 128)), ("probabilities", ("batch", 10))
    ]  # fmt: skip
    raw = json.loads((bundle_dir / "bundle.json").read_text())
    assert raw["provenance"]["classifier"]["mode"] == "linear"
    assert raw["provenance"]["classifier"]["source"] == meta["source"]
    assert raw["provenance"]["checkpoint"] == checkpoint.name
    figures = raw["validation"]["probabilities"]
    assert figures["max_abs_diff"] <= 1e-4 and figures["max_sum_error"] <= 1e-4
    assert figures["num_classes"] == 10 and figures["num_inputs"] == 2

    # The bundle (one padded batch, as the server runs it) against ssl-train's PyTorch
    # classifier on each clip alone, and its embedding against the encoder's, L2-normalised.
    clips = [preprocess_audio(f.read_bytes(), bundle.preprocessing) for f in recordings]
    embedding, probs = _onnx_outputs(bundle_dir, clips)
    reference = _pytorch_probabilities(checkpoint, clips)
    assert np.abs(probs - reference).max() <= 1e-4
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs.argmax(axis=1) == reference.argmax(axis=1)).all()
    assert np.ptp(reference, axis=1).min() > 1e-3  # the head separates classes: not uniform
    from ssl_train.classifier import load_classifier

    encoder = load_classifier(checkpoint)[0].encoder
    with torch.no_grad():
        pooled = [encoder(torch.from_numpy(zero_mean_unit_var(c))[None]) for c in clips]
    assert np.abs(embedding - F.normalize(torch.cat(pooled), dim=1).numpy()).max() <= 1e-4

    # --optimize / --quantize would leave the probabilities unvalidated: refused.
    with pytest.raises(InvalidInputError, match="not offered for speech checkpoints"):
        export_checkpoint(checkpoint, tmp_path / "q", name="digits", quantize="int8")
    assert not (tmp_path / "q").exists()


def test_a_bad_speech_classifier_head_is_a_checkpoint_error(speech_classifier, tmp_path):
    checkpoint, _ = speech_classifier
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    meta = json.loads((broken / "classifier.json").read_text())
    meta["labels"] = meta["labels"][:3]  # 3 labels for a 10-class head
    (broken / "classifier.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit a linear head 128 -> 3 classes"):
        export_speech_checkpoint(broken, tmp_path / "b", name="x")
    assert not (tmp_path / "b").exists()


def test_served_classify_of_audio_equals_onnxruntime_and_pytorch(
    speech_classifier, recordings, tmp_path
):
    """Classify over gRPC (client, raw samples, the CLI) and KServe ModelInfer on a real
    `ssl-serve serve` process (torch blocked) against the bundle in-process and ssl-train."""
    import soundfile as sf
    import tritonclient.grpc as triton
    from serve_helpers import start_server, stop_server

    from ssl_serve.client import AsyncEmbeddingClient, EmbeddingClient
    from ssl_serve.errors import RemoteError

    checkpoint, models = speech_classifier
    bundle = read_bundle(models / "digits" / "1")
    labels = list(bundle.labels or ())
    files = [f.read_bytes() for f in recordings]
    clips = [preprocess_audio(data, bundle.preprocessing) for data in files]
    embedding, local = _onnx_outputs(models / "digits" / "1", clips)
    reference = _pytorch_probabilities(checkpoint, clips)
    srv = start_server(models, tmp_path / "server.log")
    try:
        with EmbeddingClient(srv.address, timeout_s=60) as client:
            served = client.classify_audio("digits", files, top_k=3, batch_size=1)
            assert served.labels == tuple(labels)
            assert served.probabilities.shape == (2, 10)
            assert np.abs(served.probabilities - local).max() <= 1e-5
            assert np.abs(served.probabilities - reference).max() <= 1e-4
            for row, top in zip(served.probabilities, served.top_k, strict=True):
                assert [label for label, _ in top] == [labels[j] for j in np.argsort(-row)[:3]]
                assert top[0] == (labels[int(row.argmax())], pytest.approx(float(row.max())))
            # Raw samples at the bundle's rate: the same clips, the same probabilities.
            raw = client.classify_raw_audio("digits", clips, 16000.0, top_k=1)
            assert np.abs(raw.probabilities - local).max() <= 1e-5
            # Embed on the classifier still returns its embedding.
            assert np.abs(client.embed_audio("digits", files) - embedding).max() <= 1e-5
            with pytest.raises(RemoteError, match="input 1: ") as bad:
                client.classify_audio("digits", [files[0], b"RIFF not a wav file"])
            assert bad.value.code.name == "INVALID_ARGUMENT"
            with pytest.raises(RemoteError, match="modality text not supported") as text:
                client.classify_texts("digits", ["seven"])
            assert text.value.code.name == "INVALID_ARGUMENT"

        async def classify_async() -> tuple[np.ndarray, np.ndarray]:
            async with AsyncEmbeddingClient(srv.address, timeout_s=60) as client:
                a = await client.classify_audio("digits", files, top_k=1)
                b = await client.classify_raw_audio("digits", clips, 16000.0, top_k=1)
                return a.probabilities, b.probabilities

        for probs in asyncio.run(classify_async()):
            assert np.abs(probs - local).max() <= 1e-5

        triton_client = triton.InferenceServerClient(srv.address)
        feeds = pad_audio(clips)
        inputs = []
        for name, datatype in (("input_values", "FP32"), ("attention_mask", "INT64")):
            inputs.append(triton.InferInput(name, list(feeds[name].shape), datatype))
            inputs[-1].set_data_from_numpy(feeds[name])
        wanted = [triton.InferRequestedOutput("probabilities")]
        answer = triton_client.infer("digits", inputs, outputs=wanted)
        assert np.abs(answer.as_numpy("probabilities") - local).max() <= 1e-5
        triton_client.close()

        # The CLI on WAV and FLAC files (the FLAC a lossless copy of the first recording).
        samples, rate = sf.read(recordings[0], dtype="int16")
        flac = tmp_path / "utterance.flac"
        sf.write(flac, samples, rate, format="FLAC")
        out = tmp_path / "p.npy"
        args = ["classify", "--target", srv.address, "--model", "digits", "--top-k", "2",
                "--output", str(out), str(recordings[0]), str(flac)]  # fmt: skip
        assert main(args) == 0
        np.testing.assert_allclose(np.load(out), local[[0, 0]], atol=1e-5)
        assert main([*args[:-2], str(flac), str(tmp_path / "image.png")]) == 2
    finally:
        assert stop_server(srv) == 0, srv.log.read_text()
