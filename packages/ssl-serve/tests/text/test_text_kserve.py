"""KServe v2 on the real all-MiniLM-L6-v2: tritonclient sends INT64 token tensors, padded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from serve_helpers import ServerProcess
from tritonclient.utils import InferenceServerException

from ssl_serve.client import EmbeddingClient
from ssl_serve.preprocess.text import TextTokenizer, pad_sequences

TEXT_MODEL = "minilm"
NAMES = ("input_ids", "attention_mask", "token_type_ids")


@pytest.fixture(scope="module")
def client(text_server: ServerProcess):
    with EmbeddingClient(text_server.address, timeout_s=60) as c:
        c.wait_until_serving(timeout_s=60)
    c = triton.InferenceServerClient(text_server.address)
    yield c
    c.close()


@pytest.fixture(scope="module")
def padded(text_repository: Path, sentences: list[str]) -> dict[str, np.ndarray]:
    """12 real sentences tokenised (special tokens in) and right-padded: ``(12, L) int64``."""
    folder = text_repository / TEXT_MODEL / "1"
    tokens = TextTokenizer(folder / "tokenizer.json", 256).tokenize(sentences[:12])
    ids, mask = pad_sequences(tokens.ids, 0)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def _inputs(tensors: dict[str, np.ndarray], datatype: str = "INT64") -> list[triton.InferInput]:
    items = []
    for name in reversed(NAMES):  # any order: inputs are matched by name
        item = triton.InferInput(name, list(tensors[name].shape), datatype)
        item.set_data_from_numpy(tensors[name])
        items.append(item)
    return items


def test_model_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_model_ready(TEXT_MODEL) is True
    meta = client.get_model_metadata(TEXT_MODEL)
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        (name, "INT64", [-1, -1]) for name in NAMES
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("embedding", "FP32", [-1, 384])
    ]


def test_infer_equals_in_process_onnxruntime_and_the_text_api(
    client: triton.InferenceServerClient,
    text_server: ServerProcess,
    text_repository: Path,
    padded: dict[str, np.ndarray],
    sentences: list[str],
) -> None:
    served = client.infer(TEXT_MODEL, _inputs(padded)).as_numpy("embedding")
    session = ort.InferenceSession(str(text_repository / TEXT_MODEL / "1" / "model.onnx"))
    reference = session.run(["embedding"], padded)[0]
    assert served.shape == (12, 384) and served.dtype == np.float32
    assert np.abs(served - reference).max() <= 1e-5
    # The same sentences through ssl_serve.v1 (server-side tokenisation, its own padding).
    with EmbeddingClient(text_server.address, timeout_s=60) as v1:
        texts = v1.embed_texts(TEXT_MODEL, sentences[:12])
    assert np.abs(served - texts).max() <= 1e-5
    as_int32 = {k: v.astype(np.int32) for k, v in padded.items()}
    np.testing.assert_array_equal(
        client.infer(TEXT_MODEL, _inputs(as_int32, "INT32")).as_numpy("embedding"), served
    )


def _error(client: triton.InferenceServerClient, items: list[triton.InferInput]) -> tuple:
    with pytest.raises(InferenceServerException) as info:
        client.infer(TEXT_MODEL, items)
    return str(info.value.status()), info.value.message()


def test_bad_token_tensors_are_invalid_argument(
    client: triton.InferenceServerClient, padded: dict[str, np.ndarray]
) -> None:
    out_of_vocab = {**padded, "input_ids": padded["input_ids"].copy()}
    out_of_vocab["input_ids"][3, 1] = 30522
    assert _error(client, _inputs(out_of_vocab)) == (
        "StatusCode.INVALID_ARGUMENT",
        "input_ids[3, 1] = 30522 is outside the vocabulary [0, 30522)",
    )
    too_long = {k: np.ones((1, 257), np.int64) for k in NAMES}
    status, message = _error(client, _inputs(too_long))
    assert status == "StatusCode.INVALID_ARGUMENT"
    assert message == "sequence length 257 is over model 'minilm''s max_length of 256 tokens"
    ragged = {**padded, "attention_mask": padded["attention_mask"][:, :-1]}
    assert _error(client, _inputs(ragged))[0] == "StatusCode.INVALID_ARGUMENT"
    floats = {k: v.astype(np.float32) for k, v in padded.items()}
    status, message = _error(client, _inputs(floats, "FP32"))
    assert status == "StatusCode.INVALID_ARGUMENT"
    assert message.endswith("has datatype 'FP32'; it takes INT64 or INT32")
    no_types = _inputs(padded)[1:]  # token_type_ids left out
    status, message = _error(client, no_types)
    assert status == "StatusCode.INVALID_ARGUMENT" and "missing: ['token_type_ids']" in message
    empty_row = {**padded, "attention_mask": padded["attention_mask"].copy()}
    empty_row["attention_mask"][5] = 0
    assert _error(client, _inputs(empty_row))[1] == (
        "attention_mask row 5 has no real token (all zeros)"
    )
    assert client.infer(TEXT_MODEL, _inputs(padded)).as_numpy("embedding").shape == (12, 384)


def test_text_bundle_as_a_triton_entry(text_repository: Path, tmp_path: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from ssl_serve.triton import export_triton

    bundle = text_repository / TEXT_MODEL / "1"
    (entry,) = export_triton(text_repository, tmp_path)
    assert sorted(p.name for p in entry.model.parent.iterdir()) == [
        "bundle.json",
        "model.onnx",
        "tokenizer.json",
    ]
    assert entry.model.read_bytes() == (bundle / "model.onnx").read_bytes()
    config = text_format.Parse(entry.config.read_text(), model_config_pb2.ModelConfig())
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        (name, model_config_pb2.TYPE_INT64, [-1]) for name in NAMES
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        ("embedding", model_config_pb2.TYPE_FP32, [384])
    ]
    assert config.max_batch_size == 64 and config.HasField("dynamic_batching")
