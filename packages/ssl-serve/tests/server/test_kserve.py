"""KServe v2 (`inference.GRPCInferenceService`) on a real server process, called by tritonclient.

The server (a subprocess, torch blocked) serves the random-init Fashion-MNIST image bundle; the
stock `tritonclient.grpc` client and its own stubs talk to it. References are onnxruntime run
in this process on the same pixel tensors.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from serve_helpers import MODEL_NAME, ServerProcess, reference_preprocess
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from ssl_serve.client import EmbeddingClient


@pytest.fixture(scope="module")
def client(server: ServerProcess):
    with EmbeddingClient(server.address, timeout_s=20) as c:
        c.wait_until_serving(timeout_s=20)  # ServerReady is false until the models are warm
    c = triton.InferenceServerClient(server.address)
    yield c
    c.close()


@pytest.fixture(scope="module")
def stub(server: ServerProcess):
    with grpc.insecure_channel(server.address) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def pixels(fashion_test_images: np.ndarray) -> np.ndarray:
    """``(5, 1, 28, 28) float32``: 5 real test images, preprocessed independently (numpy)."""
    return reference_preprocess(fashion_test_images[:5])


def _in_process(repository: Path, pixels: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(repository / MODEL_NAME / "1" / "model.onnx"))
    return session.run(["embedding"], {"pixel_values": pixels})[0]


def _infer(client: triton.InferenceServerClient, x: np.ndarray, **kwargs) -> triton.InferResult:
    item = triton.InferInput("pixel_values", list(x.shape), kwargs.pop("datatype", "FP32"))
    item.set_data_from_numpy(x)
    return client.infer(MODEL_NAME, [item], **kwargs)


def _status(info: pytest.ExceptionInfo[InferenceServerException]) -> str:
    return str(info.value.status())


def test_health_and_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() is True
    assert client.is_server_ready() is True
    assert client.is_model_ready(MODEL_NAME) is True
    assert client.is_model_ready(MODEL_NAME, "1") is True
    meta = client.get_server_metadata()
    assert (meta.name, list(meta.extensions)) == ("ssl-serve", [])
    with pytest.raises(InferenceServerException) as info:
        client.is_model_ready("no-such-model")
    assert _status(info) == "StatusCode.NOT_FOUND"
    assert "'no-such-model' not found; available: fashion-mnist" in info.value.message()


def test_model_metadata(client: triton.InferenceServerClient) -> None:
    meta = client.get_model_metadata(MODEL_NAME)
    assert (meta.name, list(meta.versions), meta.platform) == (
        MODEL_NAME,
        ["1"],
        "onnxruntime_onnx",
    )
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("pixel_values", "FP32", [-1, 1, 28, 28])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("embedding", "FP32", [-1, 128])
    ]
    as_json = client.get_model_metadata(MODEL_NAME, "1", as_json=True)
    assert as_json["inputs"][0]["shape"] == ["-1", "1", "28", "28"]  # int64 as JSON strings
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata(MODEL_NAME, "7")
    assert _status(info) == "StatusCode.NOT_FOUND"


def test_infer_raw_equals_in_process_onnxruntime(
    client: triton.InferenceServerClient, repository: Path, pixels: np.ndarray
) -> None:
    result = _infer(
        client, pixels, request_id="req-7", outputs=[triton.InferRequestedOutput("embedding")]
    )
    served = result.as_numpy("embedding")
    assert served.shape == (5, 128) and served.dtype == np.float32
    assert np.abs(served - _in_process(repository, pixels)).max() <= 1e-5
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (MODEL_NAME, "1", "req-7")
    assert len(response.raw_output_contents) == 1  # tritonclient reads raw output only
    assert not response.outputs[0].contents.fp32_contents
    timing = response.parameters
    assert timing["total_ms"].double_param >= timing["inference_ms"].double_param > 0
    one = _infer(client, pixels[2:3]).as_numpy("embedding")  # batch 1: a new batch size
    np.testing.assert_array_equal(one[0], served[2])


def test_typed_contents_in_typed_out_binary_data_overrides(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, repository: Path, pixels: np.ndarray
) -> None:
    x = pixels[:3]
    tensor = service_pb2.ModelInferRequest.InferInputTensor(
        name="pixel_values", datatype="FP32", shape=list(x.shape)
    )
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    request = service_pb2.ModelInferRequest(model_name=MODEL_NAME, inputs=[tensor])
    response = stub.ModelInfer(request, timeout=20)
    (out,) = response.outputs
    assert (out.name, out.datatype, list(out.shape)) == ("embedding", "FP32", [3, 128])
    assert not response.raw_output_contents
    typed = np.asarray(out.contents.fp32_contents, dtype=np.float32).reshape(3, 128)
    assert np.abs(typed - _in_process(repository, x)).max() <= 1e-5
    wanted = service_pb2.ModelInferRequest.InferRequestedOutputTensor(name="embedding")
    wanted.parameters["binary_data"].bool_param = True
    request.outputs.append(wanted)
    response = stub.ModelInfer(request, timeout=20)
    raw = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(3, 128)
    np.testing.assert_array_equal(raw, typed)
    assert not response.outputs[0].contents.fp32_contents


def _code(stub: service_pb2_grpc.GRPCInferenceServiceStub, request) -> tuple[str, str]:
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=20)
    return info.value.code().name, info.value.details()


def test_bad_tensors_are_invalid_argument_and_server_keeps_serving(
    client: triton.InferenceServerClient,
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    pixels: np.ndarray,
) -> None:
    with pytest.raises(InferenceServerException) as info:
        _infer(client, pixels.astype(np.float64), datatype="FP64")
    assert _status(info) == "StatusCode.INVALID_ARGUMENT"
    assert "has datatype 'FP64'; it takes FP32" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        _infer(client, pixels[:, :, :27])
    assert _status(info) == "StatusCode.INVALID_ARGUMENT"
    assert "has shape [5, 1, 27, 28]; it takes [-1, 1, 28, 28]" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        _infer(client, pixels[0])  # no batch axis
    assert _status(info) == "StatusCode.INVALID_ARGUMENT"

    def request(**kwargs) -> service_pb2.ModelInferRequest:
        tensor = service_pb2.ModelInferRequest.InferInputTensor(
            name=kwargs.pop("name", "pixel_values"), datatype="FP32", shape=[1, 1, 28, 28]
        )
        return service_pb2.ModelInferRequest(model_name=MODEL_NAME, inputs=[tensor], **kwargs)

    one = pixels[:1].tobytes()
    assert _code(stub, request(raw_input_contents=[one[:-4]])) == (
        "INVALID_ARGUMENT",
        "input 'pixel_values' of model 'fashion-mnist': raw_input_contents holds 3132 bytes; "
        "shape [1, 1, 28, 28] FP32 needs 3136",
    )
    code, details = _code(stub, request(name="pixels", raw_input_contents=[one]))
    assert code == "INVALID_ARGUMENT" and "input 'pixels' is not an input of model" in details
    code, details = _code(stub, request())  # no contents at all
    assert (code, details.split(": ")[-1]) == (
        "INVALID_ARGUMENT",
        "contents.fp32_contents holds 0 values; shape [1, 1, 28, 28] needs 784",
    )
    bad_output = request(raw_input_contents=[one])
    bad_output.outputs.add(name="logits")
    code, details = _code(stub, bad_output)
    assert code == "INVALID_ARGUMENT" and "requested output 'logits'" in details
    nan = request(raw_input_contents=[np.full((1, 1, 28, 28), np.nan, np.float32).tobytes()])
    assert _code(stub, nan)[0] == "INVALID_ARGUMENT"
    served = _infer(client, pixels).as_numpy("embedding")  # still serving
    assert served.shape == (5, 128)


def test_unknown_model_or_version_is_not_found(
    client: triton.InferenceServerClient, pixels: np.ndarray
) -> None:
    item = triton.InferInput("pixel_values", list(pixels.shape), "FP32")
    item.set_data_from_numpy(pixels)
    with pytest.raises(InferenceServerException) as info:
        client.infer("no-such-model", [item])
    assert _status(info) == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as info:
        client.infer(MODEL_NAME, [item], model_version="2")
    assert _status(info) == "StatusCode.NOT_FOUND"
    assert "model 'fashion-mnist' version '2' not found" in info.value.message()


def test_unimplemented_triton_extensions_and_reflection(
    client: triton.InferenceServerClient, server: ServerProcess
) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.get_model_config(MODEL_NAME)
    assert _status(info) == "StatusCode.UNIMPLEMENTED"
    with grpc.insecure_channel(server.address) as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "inference.GRPCInferenceService" in services
