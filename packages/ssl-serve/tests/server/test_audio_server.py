"""Serving an audio bundle: Embed (audio, raw_audio, tensor), KServe v2, the CLI, refusals.

A small random-init wav2vec 2.0 (GroupNorm feature encoder) saved with save_pretrained, exported
with `export_hf_model`, served by a real `ssl-serve serve` process with torch blocked; served
embeddings are compared with onnxruntime run in-process on the same preprocessing.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import soxr
import tritonclient.grpc as triton
from serve_helpers import (
    NO_TORCH,
    ServerProcess,
    run_threads,
    scrape,
    start_server,
    stop_server,
    value,
)
from tritonclient.utils import InferenceServerException

from ssl_serve.bundle import AudioPreprocessing, read_bundle
from ssl_serve.client import EmbeddingClient
from ssl_serve.errors import RemoteError
from ssl_serve.preprocess import pad_audio, preprocess_audio

MODEL = "speech"


@pytest.fixture(scope="module")
def audio_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from ssl_serve.export import export_hf_model

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=[16] * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    folder = tmp_path_factory.mktemp("wav2vec2")
    Wav2Vec2Model(config).eval().save_pretrained(folder)
    repo = tmp_path_factory.mktemp("audio-repository")
    export_hf_model(folder, repo / MODEL / "1", name=MODEL)
    return repo


@pytest.fixture(scope="module")
def audio_server(
    tmp_path_factory: pytest.TempPathFactory, audio_repository: Path
) -> Iterator[ServerProcess]:
    srv = start_server(audio_repository, tmp_path_factory.mktemp("audio-server") / "server.log")
    with EmbeddingClient(srv.address, timeout_s=60) as c:
        c.wait_until_serving(timeout_s=60)
    yield srv
    if srv.proc.poll() is None:
        assert stop_server(srv) == 0, srv.log.read_text()


@pytest.fixture(scope="module")
def recordings() -> list[Path]:
    from ssl_serve.export import default_validation_recordings

    return default_validation_recordings()


def _local(repo: Path, clips: list[np.ndarray]) -> np.ndarray:
    """In-process onnxruntime, one clip at a time (no padding at all)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(repo / MODEL / "1" / "model.onnx"), options)
    return np.concatenate([session.run(["embedding"], pad_audio([c]))[0] for c in clips])


def _prep(repo: Path) -> AudioPreprocessing:
    prep = read_bundle(repo / MODEL / "1").preprocessing
    assert isinstance(prep, AudioPreprocessing)
    return prep


def test_served_audio_equals_in_process_onnxruntime(
    audio_server: ServerProcess, audio_repository: Path, recordings: list[Path]
) -> None:
    data = [p.read_bytes() for p in recordings]
    local = _local(audio_repository, [preprocess_audio(d, _prep(audio_repository)) for d in data])
    with EmbeddingClient(audio_server.address, timeout_s=60) as client:
        (meta,) = client.list_models()
        assert (meta.name, meta.modality, meta.embedding_dim) == (MODEL, "audio", 32)
        # 16 kHz LibriVox and 8 kHz Asterisk files in one request, then in requests of 3.
        for batch_size in (len(data), 3):
            served = client.embed_audio(MODEL, data, batch_size=batch_size)
            assert np.abs(served - local).max() <= 1e-5
        x, rate = sf.read(recordings[0], dtype="float32")
        tone_44k = soxr.resample(x, rate, 44100, quality="VHQ").astype(np.float32)
        raw = client.embed_raw_audio(MODEL, [tone_44k, x], 44100.0)
        assert float(raw[0] @ local[0]) >= 0.999


def test_concurrent_audio_requests_merge_and_equal_each_clip_alone(
    tmp_path: Path, audio_repository: Path, recordings: list[Path]
) -> None:
    """Audio goes through the dynamic batcher: clips of 8 threads' requests (real 16 kHz and
    8 kHz speech cut to 0.3-3 s) are merged into shared, length-sorted padded runs, and every
    embedding still equals its clip run alone, unpadded, in-process (1e-5)."""
    prep = _prep(audio_repository)
    speech = [preprocess_audio(p.read_bytes(), prep) for p in recordings]
    rate = prep.sample_rate
    clips = [speech[i % len(speech)][: int(rate * (0.3 + 0.45 * (i % 7)))] for i in range(24)]
    local = _local(audio_repository, clips)
    args = ["--max-queue-delay-ms", "50", "--workers", "16"]
    srv = start_server(audio_repository, tmp_path / "server.log", metrics=True, args=args)
    served: dict[int, np.ndarray] = {}
    try:
        before = scrape(srv.metrics_url)

        def client(t: int) -> None:
            with EmbeddingClient(srv.address, timeout_s=60) as c:
                for k in range(3):  # requests of 1 clip each: only merging puts them together
                    i = 3 * t + k
                    served[i] = c.embed_raw_audio(MODEL, [clips[i]], float(rate))[0]

        run_threads(8, client)
        after = scrape(srv.metrics_url)
    finally:
        assert stop_server(srv) == 0, srv.log.read_text()
    worst = max(float(np.abs(served[i] - local[i]).max()) for i in range(len(clips)))
    assert worst <= 1e-5, worst
    labels = {"model": MODEL}
    requests = value(after, "ssl_serve_batch_requests_sum", **labels) - value(
        before, "ssl_serve_batch_requests_sum", **labels
    )
    batches = value(after, "ssl_serve_batch_requests_count", **labels) - value(
        before, "ssl_serve_batch_requests_count", **labels
    )
    assert requests == len(clips)  # each ran exactly once
    assert batches < requests, "no two concurrent audio requests were merged"


def test_bad_audio_is_invalid_argument_naming_the_input(
    audio_server: ServerProcess, recordings: list[Path]
) -> None:
    good = recordings[0].read_bytes()
    with EmbeddingClient(audio_server.address, timeout_s=60) as client:
        for bad, message in [
            (b"nope", "input 1: cannot decode audio (4 bytes)"),
            (b"", "input 1: audio is empty"),
        ]:
            with pytest.raises(RemoteError) as info:
                client.embed_audio(MODEL, [good, bad])
            assert info.value.details.startswith(message), info.value.details
        with pytest.raises(
            RemoteError, match=r"31\.00 s long; this model takes clips of at most 30"
        ):
            client.embed_raw_audio(MODEL, [np.zeros(31 * 16000, np.float32)], 16000)
        with pytest.raises(RemoteError, match="sample rate is 0 Hz"):
            client.embed_raw_audio(MODEL, [np.zeros(16000, np.float32)], 0.0)
        with pytest.raises(RemoteError, match="modality image not supported by model speech"):
            client.embed_images(MODEL, [good])


def test_kserve_audio_equals_in_process_and_checks_the_mask(
    audio_server: ServerProcess, audio_repository: Path, recordings: list[Path]
) -> None:
    clips = [preprocess_audio(p.read_bytes(), _prep(audio_repository)) for p in recordings[:4]]
    feeds = pad_audio(clips)
    client = triton.InferenceServerClient(audio_server.address)
    meta = client.get_model_metadata(MODEL)
    assert [(i.name, i.datatype, list(i.shape)) for i in meta.inputs] == [
        ("input_values", "FP32", [-1, -1]),
        ("attention_mask", "INT64", [-1, -1]),
    ]

    def infer(mask: np.ndarray) -> np.ndarray:
        inputs = []
        for name, array, datatype in (
            ("input_values", feeds["input_values"], "FP32"),
            ("attention_mask", mask, "INT64"),
        ):
            inputs.append(triton.InferInput(name, list(array.shape), datatype))
            inputs[-1].set_data_from_numpy(array)
        return client.infer(MODEL, inputs).as_numpy("embedding")

    assert np.abs(infer(feeds["attention_mask"]) - _local(audio_repository, clips)).max() <= 1e-5
    holed = feeds["attention_mask"].copy()
    holed[0, 5] = 0
    with pytest.raises(InferenceServerException, match="input 0: attention_mask must be 1 on a"):
        infer(holed)
    client.close()


def test_cli_embeds_wav_and_flac_files(
    audio_server: ServerProcess, audio_repository: Path, recordings: list[Path], tmp_path: Path
) -> None:
    samples, rate = sf.read(recordings[0], dtype="int16")
    flac = tmp_path / "utterance.flac"
    sf.write(flac, samples, rate, format="FLAC")
    files = [str(recordings[0]), str(flac)]
    cmd = [sys.executable, "-c", NO_TORCH, "embed", "--target", audio_server.address]
    out = subprocess.run(
        [*cmd, "--model", MODEL, *files, "--output", str(tmp_path / "e")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    emb = np.load(tmp_path / "e.npy")
    assert emb.shape == (2, 32)
    np.testing.assert_array_equal(emb[0], emb[1])  # WAV and FLAC of the same samples
    mixed = subprocess.run(
        [*cmd, "--model", MODEL, files[0], "shirt.png", "--output", str(tmp_path / "m")],
        capture_output=True,
        text=True,
    )
    assert mixed.returncode == 2 and "not both" in mixed.stderr
