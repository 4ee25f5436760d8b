"""Pretrain -> export -> a real server process -> Embed over gRPC, on real Fashion-MNIST images."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers import cli
from PIL import Image
from safetensors.torch import load_file

from ssl_data import load_fashion_mnist
from ssl_data.datasets import bundled_sample_root
from ssl_serve.client import EmbeddingClient
from ssl_serve.errors import RemoteError
from ssl_train.recipe import load_recipe
from ssl_train.trainer import build_model

MODEL = "fashion-mnist-simclr"


@pytest.fixture(scope="module")
def repository(pretrained_run, tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    cli("ssl-serve", "export", str(pretrained_run), "--repository", str(repo), "--name", MODEL)
    return repo


@pytest.fixture(scope="module")
def server(repository):
    proc = subprocess.Popen(
        ["ssl-serve", "serve", "--repository", str(repository), "--port", "0", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert "listening on" in line, proc.stderr.read() if proc.poll() is not None else line
    target = line.strip().rsplit(" ", 1)[-1]
    with EmbeddingClient(target) as client:
        client.wait_until_serving(30)
        yield client
    proc.terminate()
    assert proc.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def test_images():
    x, y = load_fashion_mnist("test", root=bundled_sample_root())
    return x[:37], y[:37]


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def test_bundle_records_parity_and_provenance(repository, pretrained_run):
    bundle = json.loads((repository / MODEL / "1" / "bundle.json").read_text())
    assert bundle["modality"] == "image" and bundle["embedding_dim"] == 128
    assert bundle["validation"]["max_abs_diff"] <= 1e-4
    recipe_bytes = (pretrained_run / "recipe.yaml").read_bytes()
    assert (repository / MODEL / "1" / "recipe.yaml").read_bytes() == recipe_bytes
    # Provenance hashes the recipe file's bytes (ssl-serve never imports ssl-train).
    assert bundle["provenance"]["recipe_sha256"] == hashlib.sha256(recipe_bytes).hexdigest()
    recipe = load_recipe(pretrained_run / "recipe.yaml")
    assert bundle["preprocessing"]["mean"] == pytest.approx(recipe.data.mean)


def test_served_embeddings_equal_in_process_onnxruntime_and_torch(
    server, repository, pretrained_run, test_images
):
    images, _ = test_images
    served = server.embed_images(MODEL, [_png(i) for i in images], batch_size=16)
    assert served.shape == (37, 128) and served.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)

    # Independent preprocessing: 28x28 grayscale, scale to [0, 1], normalise with the recipe's stats.
    recipe = load_recipe(pretrained_run / "recipe.yaml")
    x = ((images.astype(np.float32) / 255 - recipe.data.mean[0]) / recipe.data.std[0])[:, None]
    session = ort.InferenceSession(
        str(repository / MODEL / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    local = session.run(None, {"pixel_values": x})[0]
    np.testing.assert_allclose(served, local, atol=1e-5, rtol=0)

    # And the PyTorch encoder from the checkpoint, L2-normalised (the export's contract).
    model = build_model(recipe)
    ckpt = (
        pretrained_run
        / "checkpoints"
        / (pretrained_run / "checkpoints" / "latest").read_text().strip()
    )
    model.load_state_dict(load_file(str(ckpt / "model.safetensors")))
    model.eval()
    with torch.no_grad():
        ref = torch.nn.functional.normalize(model.embed(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(served, ref, atol=1e-4, rtol=0)


def test_bad_image_is_invalid_argument_and_server_keeps_serving(server, test_images):
    images, _ = test_images
    good = [_png(i) for i in images[:3]]
    with pytest.raises(RemoteError) as err:
        server.embed_images(MODEL, [good[0], b"definitely not a png", good[1]])
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 1" in err.value.details
    with pytest.raises(RemoteError) as err:
        server.embed_images("no-such-model", good)
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    again = server.embed_images(MODEL, good)
    assert again.shape == (3, 128)


def test_list_models_and_cli_embed(server, tmp_path, test_images):
    models = server.list_models()
    assert [(m.name, m.version, m.embedding_dim) for m in models] == [(MODEL, "1", 128)]
    images, _ = test_images
    files = []
    for i, img in enumerate(images[:4]):
        files.append(tmp_path / f"{i}.png")
        files[-1].write_bytes(_png(img))
    out = tmp_path / "emb.npy"
    cli(
        "ssl-serve",
        "embed",
        "--target",
        server.target,
        "--model",
        MODEL,
        "--output",
        str(out),
        *map(str, files),
    )
    np.testing.assert_allclose(
        np.load(out), server.embed_images(MODEL, [f.read_bytes() for f in files]), atol=1e-6
    )
