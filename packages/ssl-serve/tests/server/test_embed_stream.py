"""EmbedStream (bidirectional streaming) against a real `ssl-serve serve` subprocess."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from serve_helpers import MODEL_NAME, ServerProcess, png_bytes

from ssl_serve.client import EmbeddingClient
from ssl_serve.errors import RemoteError
from ssl_serve.v1 import embedding_pb2, embedding_pb2_grpc


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[EmbeddingClient]:
    with EmbeddingClient(server.address, timeout_s=20) as c:
        c.wait_until_serving(timeout_s=20)
        yield c


def _requests(images: list[bytes], count: int) -> list[embedding_pb2.EmbedRequest]:
    """``count`` requests of 1..5 images each, taken cyclically from ``images``."""
    out = []
    for k in range(count):
        size = 1 + k % 5
        chunk = [images[(k + j) % len(images)] for j in range(size)]
        out.append(
            embedding_pb2.EmbedRequest(
                model_name=MODEL_NAME,
                inputs=[embedding_pb2.Input(image=b) for b in chunk],
                request_id=f"req-{k:03d}",
            )
        )
    return out


def test_stream_equals_unary_embed_in_order(
    client: EmbeddingClient, fashion_test_images: np.ndarray
) -> None:
    images = [png_bytes(img) for img in fashion_test_images]
    requests = _requests(images, 40)
    streamed = list(client.embed_stream(requests, timeout_s=60))
    assert [r.request_id for _, r in streamed] == [q.request_id for q in requests]
    for request, (emb, response) in zip(requests, streamed, strict=True):
        unary, unary_response = client.embed(request)
        assert emb.shape == (len(request.inputs), 128)
        # Same batch, same model, same thread count: bit-identical.
        assert response.embeddings == unary_response.embeddings
        np.testing.assert_array_equal(emb, unary)
        assert response.usage.inputs == len(request.inputs)
        assert not response.HasField("error")


def test_stream_makes_request_ids_when_empty(
    client: EmbeddingClient, fashion_test_images: np.ndarray
) -> None:
    requests = _requests([png_bytes(img) for img in fashion_test_images[:3]], 6)
    for r in requests:
        r.ClearField("request_id")
    ids = [response.request_id for _, response in client.embed_stream(requests, timeout_s=30)]
    assert len(ids) == 6 and len(set(ids)) == 6 and all(len(i) == 32 for i in ids)


def test_stream_answers_each_request_before_the_next_is_sent(
    client: EmbeddingClient, fashion_test_images: np.ndarray
) -> None:
    # The request generator waits for the previous answer: a server that read the whole
    # stream before answering would deadlock here (and hit the deadline).
    requests = _requests([png_bytes(img) for img in fashion_test_images], 8)
    answered: queue.Queue[str] = queue.Queue()

    def lockstep() -> Iterator[embedding_pb2.EmbedRequest]:
        for k, request in enumerate(requests):
            if k:
                assert answered.get(timeout=15) == requests[k - 1].request_id
            yield request

    seen = []
    for _, response in client.embed_stream(lockstep(), timeout_s=30):
        seen.append(response.request_id)
        answered.put(response.request_id)
    assert seen == [r.request_id for r in requests]


def test_failed_request_is_answered_in_band_and_stream_goes_on(
    server: ServerProcess, fashion_test_images: np.ndarray
) -> None:
    good = [png_bytes(img) for img in fashion_test_images[:2]]

    def request(
        rid: str, inputs: list[bytes], model: str = MODEL_NAME
    ) -> embedding_pb2.EmbedRequest:
        return embedding_pb2.EmbedRequest(
            model_name=model,
            request_id=rid,
            inputs=[embedding_pb2.Input(image=b) for b in inputs],
        )

    requests = [
        request("a", good),
        request("b", [good[0], b"\x89PNG broken"]),
        request("c", good, model="no-such-model"),
        request("d", []),
        request("e", good[::-1]),
    ]
    with grpc.insecure_channel(server.address) as channel:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        responses = list(stub.EmbedStream(iter(requests), timeout=30))
    assert [r.request_id for r in responses] == ["a", "b", "c", "d", "e"]
    codes = [r.error.code if r.HasField("error") else None for r in responses]
    assert codes == [
        None,
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        grpc.StatusCode.NOT_FOUND.value[0],
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        None,
    ]
    assert responses[1].error.message.startswith("input 1: cannot decode image")
    assert "'no-such-model' not found" in responses[2].error.message
    assert responses[3].error.message == "request has no inputs"
    assert responses[1].embeddings == b"" and list(responses[1].shape) == []
    a = np.frombuffer(responses[0].embeddings, "<f4").reshape(2, 128)
    e = np.frombuffer(responses[4].embeddings, "<f4").reshape(2, 128)
    np.testing.assert_array_equal(a, e[::-1])


def test_client_raises_at_the_failed_request_naming_its_id(
    client: EmbeddingClient, fashion_test_images: np.ndarray
) -> None:
    requests = _requests([png_bytes(img) for img in fashion_test_images[:4]], 3)
    requests[1].inputs[0].image = b"not an image"
    got = []
    with pytest.raises(RemoteError) as info:
        for _emb, response in client.embed_stream(requests, timeout_s=30):
            got.append(response.request_id)
    assert got == ["req-000"]
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details.startswith("request req-001: input 0: cannot decode image")
    # The server keeps serving streams afterwards.
    assert len(list(client.embed_stream(requests[:1], timeout_s=30))) == 1
