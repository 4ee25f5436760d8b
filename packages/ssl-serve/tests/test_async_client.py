"""AsyncEmbeddingClient against a real server, and retries of both clients.

Attempts are counted by an in-process gRPC server whose EmbeddingService answers a scripted
sequence of status codes (a real gRPC server: the clients cannot tell it from ssl-serve's), and
by a real `ssl-serve serve` started after the client's first calls.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from serve_helpers import MODEL_NAME, ServerProcess, png_bytes, start_server, stop_server

from ssl_serve.client import AsyncEmbeddingClient, EmbeddingClient, RetryPolicy
from ssl_serve.errors import RemoteError
from ssl_serve.v1 import embedding_pb2, embedding_pb2_grpc


class ScriptedService(embedding_pb2_grpc.EmbeddingServiceServicer):
    """ListModels fails with the scripted codes, in order, then answers one model."""

    def __init__(self) -> None:
        self.codes: list[grpc.StatusCode] = []
        self.attempts = 0
        self.metadata: list[dict[str, str]] = []

    def ListModels(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.attempts += 1
        self.metadata.append({m.key: m.value for m in context.invocation_metadata()})
        if self.codes:
            code = self.codes.pop(0)
            context.abort(code, f"scripted {code.name}")
        model = embedding_pb2.ModelMetadata(name="m", version="1", embedding_dim=4, ready=True)
        return embedding_pb2.ListModelsResponse(models=[model])


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[str, ScriptedService]]:
    service = ScriptedService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", service
    server.stop(None)


def _script(service: ScriptedService, *codes: grpc.StatusCode) -> None:
    service.codes = list(codes)
    service.attempts = 0
    service.metadata = []


def _sync_list(target: str, **kwargs: Any) -> list[str]:
    with EmbeddingClient(target, **kwargs) as client:
        return [m.name for m in client.list_models()]


def _async_list(target: str, **kwargs: Any) -> list[str]:
    async def run() -> list[str]:
        async with AsyncEmbeddingClient(target, **kwargs) as client:
            return [m.name for m in await client.list_models()]

    return asyncio.run(run())


CLIENTS = [pytest.param(_sync_list, id="sync"), pytest.param(_async_list, id="async")]
FAST = {"retry_backoff_s": 0.01, "retry_max_backoff_s": 0.05}


@pytest.mark.parametrize("list_models", CLIENTS)
def test_unavailable_is_retried_until_it_succeeds(
    scripted: tuple[str, ScriptedService], list_models: Any
) -> None:
    target, service = scripted
    _script(service, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE)
    assert list_models(target, retries=3, token="tok", **FAST) == ["m"]
    assert service.attempts == 3
    assert all(m["authorization"] == "Bearer tok" for m in service.metadata)


@pytest.mark.parametrize("list_models", CLIENTS)
def test_retries_are_bounded(scripted: tuple[str, ScriptedService], list_models: Any) -> None:
    target, service = scripted
    _script(service, *[grpc.StatusCode.UNAVAILABLE] * 5)
    with pytest.raises(RemoteError) as e:
        list_models(target, retries=2, **FAST)
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert "after 2 retries" in e.value.details
    assert service.attempts == 3
    _script(service, grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(RemoteError):
        list_models(target, retries=0, **FAST)
    assert service.attempts == 1


@pytest.mark.parametrize("list_models", CLIENTS)
@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
    ],
)
def test_other_codes_are_not_retried(
    scripted: tuple[str, ScriptedService], list_models: Any, code: grpc.StatusCode
) -> None:
    target, service = scripted
    _script(service, code, code)
    with pytest.raises(RemoteError) as e:
        list_models(target, retries=5, **FAST)
    assert e.value.code == code
    assert service.attempts == 1


@pytest.mark.parametrize("list_models", CLIENTS)
def test_retries_stop_at_the_deadline(
    scripted: tuple[str, ScriptedService], list_models: Any
) -> None:
    target, service = scripted
    _script(service, *[grpc.StatusCode.UNAVAILABLE] * 1000)
    t0 = time.monotonic()
    with pytest.raises(RemoteError) as e:
        list_models(
            target, timeout_s=1.0, retries=1000, retry_backoff_s=0.05, retry_max_backoff_s=0.2
        )
    took = time.monotonic() - t0
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert 3 <= service.attempts < 100
    assert took < 2.5  # the 1 s deadline, plus slack for a busy machine


def test_retry_policy_backoff_grows_with_jitter_and_checks_values() -> None:
    policy = RetryPolicy(retries=5, initial_backoff_s=0.1, max_backoff_s=0.35)
    far = time.monotonic() + 60
    for attempt, cap in enumerate([0.1, 0.2, 0.35, 0.35, 0.35]):
        delays = [policy.delay_s(grpc.StatusCode.UNAVAILABLE, attempt, far) for _ in range(50)]
        assert all(d is not None and cap / 2 <= d <= cap for d in delays)
        assert len(set(delays)) > 1  # jitter
    assert policy.delay_s(grpc.StatusCode.UNAVAILABLE, 5, far) is None
    assert policy.delay_s(grpc.StatusCode.UNAVAILABLE, 0, time.monotonic() + 0.01) is None
    assert policy.delay_s(grpc.StatusCode.INVALID_ARGUMENT, 0, far) is None
    with pytest.raises(ValueError):
        RetryPolicy(retries=-1)
    with pytest.raises(ValueError):
        RetryPolicy(initial_backoff_s=0)


def test_async_client_equals_sync_client(
    server: ServerProcess, fashion_test_images: np.ndarray
) -> None:
    images = [png_bytes(img) for img in fashion_test_images[:10]]
    tensors = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    with EmbeddingClient(server.address, timeout_s=30) as client:
        client.wait_until_serving(timeout_s=60)
        expected = client.embed_images(MODEL_NAME, images, batch_size=4)
        expected_tensors = client.embed_tensors(MODEL_NAME, tensors)
        expected_models = client.list_models()
        request = embedding_pb2.EmbedRequest(
            model_name=MODEL_NAME, inputs=[embedding_pb2.Input(image=images[0])]
        )
        expected_one, _ = client.embed(request)

    async def run() -> None:
        async with AsyncEmbeddingClient(server.address, timeout_s=30) as client:
            await client.wait_until_serving(timeout_s=60)
            # Concurrent calls on one channel, each split into requests of 4 images.
            served, again = await asyncio.gather(
                client.embed_images(MODEL_NAME, images, batch_size=4),
                client.embed_images(MODEL_NAME, images[::-1], batch_size=3),
            )
            assert served.dtype == np.float32 and served.shape == (10, 128)
            assert np.array_equal(served, expected)
            assert np.abs(again[::-1] - expected).max() <= 1e-6
            assert np.array_equal(await client.embed_tensors(MODEL_NAME, tensors), expected_tensors)
            assert await client.list_models() == expected_models
            one, response = await client.embed(request)
            assert np.array_equal(one, expected_one) and response.model_version == "1"
            empty = await client.embed_images(MODEL_NAME, [])
            assert empty.shape == (0, 128)
            streamed = [
                emb async for emb, _ in client.embed_stream([request, request], timeout_s=30)
            ]
            assert len(streamed) == 2 and np.array_equal(streamed[1], expected_one)
            with pytest.raises(RemoteError) as e:
                await client.embed_images(MODEL_NAME, [b"not an image"])
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(RemoteError) as e:
                await client.get_model("no-such-model")
            assert e.value.code == grpc.StatusCode.NOT_FOUND

    asyncio.run(run())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_client_started_before_the_server_succeeds_by_retrying(
    tmp_path: Path, repository: Path, fashion_test_images: np.ndarray
) -> None:
    port = _free_port()
    target = f"127.0.0.1:{port}"
    images = [png_bytes(img) for img in fashion_test_images[:2]]
    with EmbeddingClient(target, timeout_s=5, retries=0) as client:
        t0 = time.monotonic()
        with pytest.raises(RemoteError) as e:
            client.embed_images(MODEL_NAME, images)
        assert e.value.code == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - t0 < 4  # failed fast, not at the deadline

    started: list[ServerProcess] = []

    def start_later() -> None:
        time.sleep(1.0)
        started.append(start_server(repository, tmp_path / "late.log", args=["--port", str(port)]))

    thread = threading.Thread(target=start_later)
    thread.start()
    try:
        # Up to ~45 s of retries (backoff 0.2 s doubling to 1 s): the server process needs a
        # few seconds to import and warm its model on a busy machine.
        with EmbeddingClient(
            target, timeout_s=120, retries=60, retry_backoff_s=0.2, retry_max_backoff_s=1.0
        ) as client:
            emb = client.embed_images(MODEL_NAME, images)
        assert emb.shape == (2, 128)

        async def run() -> np.ndarray:
            async with AsyncEmbeddingClient(target, timeout_s=60) as client:
                return await client.embed_images(MODEL_NAME, images)

        assert np.array_equal(asyncio.run(run()), emb)
    finally:
        thread.join(120)
        for srv in started:
            assert stop_server(srv) == 0, srv.log.read_text()
