"""Classifier bundles end to end: a real tiny fine-tune, its export, Classify over gRPC, the CLI.

The classifier comes from a real `ssl-train` run: 16 SimCLR steps of a small CNN on the bundled
Fashion-MNIST sample, then `ssl_train.finetune.Finetuner` (linear probe with batch norm, two
epochs). Served probabilities are compared with onnxruntime run in-process on the same
preprocessed inputs and with the PyTorch classifier `ssl_train.classifier.load_classifier`
rebuilds (its batch norm unfolded), within 1e-5.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from serve_helpers import ServerProcess, png_bytes, start_server, stop_server

from ssl_serve import (
    Bundle,
    BundleError,
    EmbeddingClient,
    RemoteError,
    read_bundle,
)
from ssl_serve.cli import main
from ssl_serve.preprocess import preprocess_image
from ssl_serve.v1 import embedding_pb2

ssl_train = pytest.importorskip("ssl_train")
torch = pytest.importorskip("torch")

CLASSIFIER = "fm-classifier"
EMBEDDER = "fm-embedder"
TOL = 1e-5


@dataclass(frozen=True)
class ClassifierRun:
    pretrain: Path
    finetune: Path
    repository: Path


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory: pytest.TempPathFactory) -> ClassifierRun:
    """Pretrain (16 steps), fine-tune (2 epochs), export the classifier and the encoder."""
    from ssl_data.datasets import bundled_sample_root
    from ssl_serve.export import export_checkpoint
    from ssl_train import recipe_from_dict
    from ssl_train.finetune import Finetuner, finetune_recipe
    from ssl_train.trainer import Trainer

    root = tmp_path_factory.mktemp("classifier")
    pretrain = {
        "name": "tiny-pretrain",
        "threads": 1,
        "data": {"root": str(bundled_sample_root()), "limit": 512},
        "encoder": {"name": "small_cnn", "widths": [8, 16]},
        "method": {"name": "simclr", "projection_hidden_dim": 32, "projection_dim": 16,
                   "temperature": 0.5},
        "optimizer": {"name": "sgd", "lr": 0.05},
        "schedule": {"warmup_steps": 2},
        "budget": {"batch_size": 64, "steps": 16},
        "checkpoint": {"every_steps": 100},
        "evaluation": {"every_epochs": None},
        "logging": {"progress_bar": False, "tensorboard": False, "plots": False,
                    "embedding_map": False},
    }  # fmt: skip
    Trainer(recipe_from_dict(pretrain), root / "pretrain").fit()
    recipe = finetune_recipe(
        {},
        [
            "threads=1",
            "progress_bar=false",
            "budget.epochs=2",
            "budget.batch_size=64",
            "data.limit=640",
        ],
    )
    Finetuner(root / "pretrain", recipe, root / "finetune").fit()
    repo = root / "repository"
    export_checkpoint(root / "finetune", repo / CLASSIFIER / "1", name=CLASSIFIER)
    export_checkpoint(root / "pretrain", repo / EMBEDDER / "1", name=EMBEDDER)
    return ClassifierRun(root / "pretrain", root / "finetune", repo)


@pytest.fixture(scope="module")
def classifier_server(
    classifier_run: ClassifierRun, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A real `ssl-serve serve` subprocess (torch blocked) serving both bundles."""
    srv = start_server(classifier_run.repository, tmp_path_factory.mktemp("srv") / "server.log")
    yield srv
    if srv.proc.poll() is None:
        assert stop_server(srv) == 0, srv.log.read_text()


def _reference(run: ClassifierRun, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch: softmax of ssl-train's own classifier, and the L2-normalised encoder output."""
    from ssl_train.classifier import load_classifier

    model, _ = load_classifier(run.finetune)
    with torch.inference_mode():
        x = torch.from_numpy(pixel_values)
        probs = torch.softmax(model(x), dim=1).numpy()
        emb = torch.nn.functional.normalize(model.encoder(x), dim=1).numpy()
    return probs, emb


def _test_images(n: int = 12) -> np.ndarray:
    import ssl_data

    images, _ = ssl_data.load_fashion_mnist("test")
    return np.ascontiguousarray(images[:n])


def test_export_writes_labels_and_a_validated_softmax(classifier_run: ClassifierRun) -> None:
    from ssl_data import FASHION_MNIST_CLASSES

    folder = classifier_run.repository / CLASSIFIER / "1"
    bundle = read_bundle(folder)
    assert bundle.is_classifier and bundle.labels == tuple(FASHION_MNIST_CLASSES)
    assert [o.name for o in bundle.outputs] == ["embedding", "probabilities"]
    assert bundle.outputs[1].shape == ("batch", 10)
    p = bundle.validation["probabilities"]
    assert p["max_abs_diff"] <= TOL and p["max_sum_error"] <= TOL and p["num_classes"] == 10
    assert bundle.provenance["classifier"]["mode"] == "linear"
    assert not read_bundle(classifier_run.repository / EMBEDDER / "1").is_classifier

    # In-process onnxruntime on the server's preprocessing vs ssl-train's PyTorch classifier.
    prep = bundle.preprocessing
    images = _test_images()
    x = np.stack([preprocess_image(png_bytes(im), prep) for im in images])  # type: ignore[arg-type]
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    emb, probs = sess.run(["embedding", "probabilities"], {"pixel_values": x})
    ref_probs, ref_emb = _reference(classifier_run, x)
    assert np.abs(probs - ref_probs).max() <= TOL
    assert np.abs(emb - ref_emb).max() <= TOL
    assert np.abs(probs.sum(axis=1) - 1).max() <= TOL
    # A trained head: not the uniform distribution, and better than chance on test images.
    assert probs.max(axis=1).min() > 0.1 + 1e-3


def test_served_classify_equals_onnxruntime_and_pytorch(
    classifier_run: ClassifierRun, classifier_server: ServerProcess
) -> None:
    from ssl_data import FASHION_MNIST_CLASSES

    folder = classifier_run.repository / CLASSIFIER / "1"
    prep = read_bundle(folder).preprocessing
    images = _test_images()
    pngs = [png_bytes(im) for im in images]
    x = np.stack([preprocess_image(b, prep) for b in pngs])  # type: ignore[arg-type]
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    (local,) = sess.run(["probabilities"], {"pixel_values": x})
    ref_probs, _ = _reference(classifier_run, x)
    with EmbeddingClient(classifier_server.address) as client:
        client.wait_until_serving(timeout_s=30)
        info = client.get_model(CLASSIFIER)
        assert info.labels == tuple(FASHION_MNIST_CLASSES)
        assert client.get_model(EMBEDDER).labels == ()
        result = client.classify_images(CLASSIFIER, pngs, top_k=3, batch_size=5)
        tensors = client.classify_tensors(CLASSIFIER, x, top_k=10)
        emb = client.embed_images(CLASSIFIER, pngs)
    assert result.labels == tuple(FASHION_MNIST_CLASSES)
    assert result.probabilities.shape == (len(images), 10)
    assert result.probabilities.dtype == np.float32
    assert np.abs(result.probabilities - local).max() <= TOL
    assert np.abs(result.probabilities - ref_probs).max() <= TOL
    assert np.abs(result.probabilities.sum(axis=1) - 1).max() <= TOL
    assert np.abs(tensors.probabilities - local).max() <= TOL
    for row, top in zip(result.probabilities, result.top_k, strict=True):
        order = np.argsort(-row, kind="stable")[:3]
        assert [label for label, _ in top] == [FASHION_MNIST_CLASSES[j] for j in order]
        assert [p for _, p in top] == [float(row[j]) for j in order]
    assert all(len(t) == 10 for t in tensors.top_k)
    # Embed still works on a classifier bundle and returns its normalised embedding.
    assert np.abs(np.linalg.norm(emb, axis=1) - 1).max() <= TOL


def test_classify_status_codes_and_the_server_keeps_serving(
    classifier_server: ServerProcess,
) -> None:
    image = png_bytes(_test_images(1)[0])
    with EmbeddingClient(classifier_server.address) as client:
        client.wait_until_serving(timeout_s=30)
        with pytest.raises(RemoteError) as err:
            client.classify_images(EMBEDDER, [image])
        assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert f"model {EMBEDDER!r}" in err.value.details
        assert "Classify needs a classifier bundle" in err.value.details
        request = embedding_pb2.ClassifyRequest(
            model_name=CLASSIFIER, inputs=[embedding_pb2.Input(image=image)], top_k=-1
        )
        with pytest.raises(RemoteError) as err:
            client.classify(request)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "top_k" in err.value.details
        with pytest.raises(RemoteError) as err:
            client.classify_images(CLASSIFIER, [image, b"not an image"])
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details.startswith("input 1:")
        with pytest.raises(RemoteError) as err:
            client.classify_images("no-such-model", [image])
        assert err.value.code == grpc.StatusCode.NOT_FOUND
        # top_k 0 means 5; the server is still serving after the errors.
        response = client.classify(
            embedding_pb2.ClassifyRequest(
                model_name=CLASSIFIER, inputs=[embedding_pb2.Input(image=image)]
            )
        )
        assert len(response.classifications[0].top) == 5
        assert response.usage.inputs == 1 and response.timing.total_ms > 0
        assert client.embed_images(EMBEDDER, [image]).shape[0] == 1


def test_classify_cli(
    classifier_server: ServerProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ssl_data import FASHION_MNIST_CLASSES

    files = []
    for i, im in enumerate(_test_images(3)):
        files.append(tmp_path / f"f{i}.png")
        files[-1].write_bytes(png_bytes(im))
    argv = ["classify", "--target", classifier_server.address, "--model", CLASSIFIER]
    assert (
        main([*argv, "--top-k", "2", "--json", "--output", str(tmp_path / "p"), *map(str, files)])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    rows = [json.loads(line) for line in lines[:3]]
    probs = np.load(tmp_path / "p.npy")
    assert probs.shape == (3, 10) and lines[3].startswith(f"wrote {tmp_path / 'p.npy'}")
    for row, f, p in zip(rows, files, probs, strict=True):
        assert row["file"] == str(f) and len(row["top"]) == 2
        assert row["top"][0]["label"] == FASHION_MNIST_CLASSES[int(p.argmax())]
        assert row["top"][0]["probability"] == pytest.approx(float(p.max()), abs=1e-7)
    # A bad file is named; an embedding-only model is refused with a clear message.
    (tmp_path / "bad.png").write_bytes(b"junk")
    assert main([*argv, str(files[0]), str(tmp_path / "bad.png")]) == 1
    assert f"{tmp_path / 'bad.png'} (input 1)" in capsys.readouterr().err
    emb_argv = ["classify", "--target", classifier_server.address, "--model", EMBEDDER]
    assert main([*emb_argv, str(files[0])]) == 1
    assert "FAILED_PRECONDITION" in capsys.readouterr().err


def test_bundle_labels_round_trip_and_validation(classifier_run: ClassifierRun) -> None:
    data = json.loads((classifier_run.repository / CLASSIFIER / "1" / "bundle.json").read_text())
    bundle = Bundle.from_dict(data)
    assert Bundle.from_dict(bundle.to_dict()) == bundle
    for bad, message in (
        ({**data, "labels": ["a"] * 10}, "distinct"),
        ({**data, "labels": data["labels"][:9]}, "9 labels"),
        ({k: v for k, v in data.items() if k != "labels"}, "must list 1"),
    ):
        with pytest.raises(BundleError, match=message):
            Bundle.from_dict(bad)


def test_kserve_infer_returns_probabilities_with_tritonclient(
    classifier_run: ClassifierRun, classifier_server: ServerProcess
) -> None:
    triton = pytest.importorskip("tritonclient.grpc")
    folder = classifier_run.repository / CLASSIFIER / "1"
    prep = read_bundle(folder).preprocessing
    x = np.stack([preprocess_image(png_bytes(im), prep) for im in _test_images(5)])  # type: ignore[arg-type]
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    emb, probs = sess.run(["embedding", "probabilities"], {"pixel_values": x})
    client = triton.InferenceServerClient(classifier_server.address)
    meta = client.get_model_metadata(CLASSIFIER)
    assert [(o.name, list(o.shape)) for o in meta.outputs] == [
        ("embedding", [-1, 16]),
        ("probabilities", [-1, 10]),
    ]
    inp = triton.InferInput("pixel_values", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    both = client.infer(CLASSIFIER, [inp])  # no outputs named: all of them
    assert np.abs(both.as_numpy("probabilities") - probs).max() <= TOL
    assert np.abs(both.as_numpy("embedding") - emb).max() <= TOL
    only = client.infer(CLASSIFIER, [inp], outputs=[triton.InferRequestedOutput("probabilities")])
    assert only.as_numpy("embedding") is None
    assert np.abs(only.as_numpy("probabilities") - probs).max() <= TOL
    with pytest.raises(Exception, match="not an output of model"):
        client.infer(EMBEDDER, [inp], outputs=[triton.InferRequestedOutput("probabilities")])
    client.close()
