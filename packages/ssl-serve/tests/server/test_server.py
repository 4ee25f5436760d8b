"""A real `ssl-serve serve` subprocess (torch blocked), called over gRPC."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from PIL import Image
from serve_helpers import MODEL_NAME, ServerProcess, png_bytes

from ssl_serve.bundle import read_bundle
from ssl_serve.client import EmbeddingClient
from ssl_serve.errors import RemoteError
from ssl_serve.preprocess import preprocess_images
from ssl_serve.v1 import embedding_pb2


@pytest.fixture(scope="module")
def client(server: ServerProcess):
    with EmbeddingClient(server.address, timeout_s=20) as c:
        c.wait_until_serving(timeout_s=20)
        yield c


def _in_process(repository: Path, images: list[bytes]) -> np.ndarray:
    folder = repository / MODEL_NAME / "1"
    batch = preprocess_images(images, read_bundle(folder).preprocessing)
    session = ort.InferenceSession(str(folder / "model.onnx"))
    return session.run(["embedding"], {"pixel_values": batch})[0]


def _mixed_images(gray: np.ndarray) -> list[bytes]:
    """Real test images as grayscale PNGs, plus RGB and 56x56 variants that need converting."""
    images = [png_bytes(img) for img in gray]
    images.append(png_bytes(np.stack([gray[0], gray[1], gray[2]], axis=-1)))
    images.append(png_bytes(np.asarray(Image.fromarray(gray[3]).resize((56, 56)))))
    return images


def test_embed_equals_in_process_onnxruntime(
    client: EmbeddingClient, repository: Path, fashion_test_images: np.ndarray
) -> None:
    images = _mixed_images(fashion_test_images[:10])
    served = client.embed_images(MODEL_NAME, images, batch_size=5)  # 3 requests
    assert served.shape == (12, 128) and served.dtype == np.float32
    assert np.abs(served - _in_process(repository, images)).max() <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


def test_response_metadata(client: EmbeddingClient, fashion_test_images: np.ndarray) -> None:
    inputs = [embedding_pb2.Input(image=png_bytes(img)) for img in fashion_test_images[:3]]
    request = embedding_pb2.EmbedRequest(model_name=MODEL_NAME, inputs=inputs, request_id="r-1")
    emb, response = client.embed(request)
    assert emb.shape == (3, 128) and list(response.shape) == [3, 128]
    assert emb.tobytes() == response.embeddings
    assert (response.model_name, response.model_version, response.request_id) == (
        MODEL_NAME,
        "1",
        "r-1",
    )
    assert response.usage.inputs == 3
    t = response.timing
    assert min(t.queue_ms, t.preprocess_ms, t.inference_ms) >= 0
    assert t.total_ms >= t.preprocess_ms + t.inference_ms
    request.ClearField("request_id")
    _, generated = client.embed(request)
    assert len(generated.request_id) == 32 and generated.request_id != "r-1"


def test_tensor_inputs_equal_image_inputs(
    client: EmbeddingClient, repository: Path, fashion_test_images: np.ndarray
) -> None:
    images = [png_bytes(img) for img in fashion_test_images[:4]]
    spec = read_bundle(repository / MODEL_NAME / "1").preprocessing
    from_tensors = client.embed_tensors(MODEL_NAME, preprocess_images(images, spec))
    np.testing.assert_array_equal(from_tensors, client.embed_images(MODEL_NAME, images))


def test_bad_image_names_its_index_and_server_keeps_serving(
    client: EmbeddingClient, fashion_test_images: np.ndarray
) -> None:
    good = [png_bytes(img) for img in fashion_test_images[:3]]
    with pytest.raises(RemoteError) as info:
        client.embed_images(MODEL_NAME, [good[0], good[1], b"\x89PNG broken", good[2]])
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details.startswith("input 2: cannot decode image")
    assert client.embed_images(MODEL_NAME, good).shape == (3, 128)


def test_unknown_model_or_version_is_not_found(client: EmbeddingClient) -> None:
    with pytest.raises(RemoteError) as info:
        client.embed_images("no-such-model", [b"x"])
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert "'no-such-model' not found; available: fashion-mnist" in info.value.details
    with pytest.raises(RemoteError) as info:
        client.get_model(MODEL_NAME, "7")
    assert info.value.code == grpc.StatusCode.NOT_FOUND


def test_other_modalities_are_invalid_argument(client: EmbeddingClient) -> None:
    request = embedding_pb2.EmbedRequest(
        model_name=MODEL_NAME, inputs=[embedding_pb2.Input(text="a red dress")]
    )
    with pytest.raises(RemoteError) as info:
        client.embed(request)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details == (
        "input 0: modality text not supported by model fashion-mnist (modality image)"
    )


def test_list_and_get_models(client: EmbeddingClient, repository: Path) -> None:
    (info,) = client.list_models()
    assert (info.name, info.version, info.modality, info.embedding_dim, info.ready) == (
        MODEL_NAME,
        "1",
        "image",
        128,
        True,
    )
    assert info.bundle == json.loads((repository / MODEL_NAME / "1" / "bundle.json").read_text())
    assert client.get_model(MODEL_NAME) == info


def test_health_and_reflection(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", MODEL_NAME):
            response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "ssl_serve.v1.EmbeddingService" in services
    assert "grpc.health.v1.Health" in services
