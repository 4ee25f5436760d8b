"""wait_until_serving against a real server: a model the ready server does not have fails at
once, naming the models it serves, instead of waiting out the timeout (sync and async)."""

from __future__ import annotations

import asyncio
import time

import pytest
from serve_helpers import MODEL_NAME, ServerProcess

from ssl_serve.client import AsyncEmbeddingClient, EmbeddingClient
from ssl_serve.errors import ModelNotFoundError


def test_sync_unknown_model_fails_fast_with_the_served_names(server: ServerProcess):
    with EmbeddingClient(server.address, timeout_s=20) as client:
        client.wait_until_serving(timeout_s=60)
        client.wait_until_serving(timeout_s=10, model=MODEL_NAME)  # a served model: returns
        t0 = time.monotonic()
        with pytest.raises(ModelNotFoundError) as err:
            client.wait_until_serving(timeout_s=60, model=MODEL_NAME + "x")
        assert time.monotonic() - t0 < 10
        assert str(err.value) == f"model '{MODEL_NAME}x' not found; available: {MODEL_NAME}"


def test_async_unknown_model_fails_fast_with_the_served_names(server: ServerProcess):
    async def run() -> str:
        async with AsyncEmbeddingClient(server.address, timeout_s=20) as client:
            await client.wait_until_serving(timeout_s=60)
            await client.wait_until_serving(timeout_s=10, model=MODEL_NAME)
            with pytest.raises(ModelNotFoundError) as err:
                await client.wait_until_serving(timeout_s=60, model="nope")
            return str(err.value)

    t0 = time.monotonic()
    assert asyncio.run(run()) == f"model 'nope' not found; available: {MODEL_NAME}"
    assert time.monotonic() - t0 < 20
