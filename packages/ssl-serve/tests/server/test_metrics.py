"""Prometheus metrics: a real `ssl-serve serve --metrics-port 0`, scraped over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serve_helpers import MODEL_NAME, ServerProcess, png_bytes, start_server, stop_server

from ssl_serve.client import EmbeddingClient
from ssl_serve.errors import RemoteError
from ssl_serve.server.metrics import UNKNOWN_MODEL, ServerMetrics
from ssl_serve.v1 import embedding_pb2

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def metrics_server(
    tmp_path_factory: pytest.TempPathFactory, repository: Path
) -> Iterator[ServerProcess]:
    """A server of its own, so its counts are exactly this module's requests."""
    srv = start_server(repository, tmp_path_factory.mktemp("metrics") / "server.log", metrics=True)
    yield srv
    if srv.proc.poll() is None:
        assert stop_server(srv) == 0, srv.log.read_text()


def scrape(url: str) -> tuple[str, Samples]:
    """The endpoint's Content-Type and every sample, by (name, labels)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode("utf-8")
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return content_type, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_scrape_counts_the_requests_made(
    metrics_server: ServerProcess, fashion_test_images: np.ndarray
) -> None:
    assert metrics_server.metrics_url is not None
    images = [png_bytes(img) for img in fashion_test_images]
    _, before = scrape(metrics_server.metrics_url)
    assert value(before, "ssl_serve_models_loaded") == 1
    assert not [k for k in before if k[0] == "ssl_serve_requests_total"]

    with EmbeddingClient(metrics_server.address, timeout_s=20) as client:
        client.wait_until_serving(timeout_s=20)
        for size in (2, 3, 4):  # 3 successful Embed calls, 9 inputs
            client.embed_images(MODEL_NAME, images[:size])
        with pytest.raises(RemoteError) as bad:  # INVALID_ARGUMENT
            client.embed_images(MODEL_NAME, [images[0], b"broken"])
        assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(RemoteError) as missing:  # NOT_FOUND, an unknown model name
            client.embed_images("no-such-model", images[:1])
        assert missing.value.code == grpc.StatusCode.NOT_FOUND
        stream = [
            embedding_pb2.EmbedRequest(
                model_name=MODEL_NAME, inputs=[embedding_pb2.Input(image=b) for b in chunk]
            )
            for chunk in (images[:5], images[5:6], [b"broken"])
        ]
        with pytest.raises(RemoteError):  # 2 answered, then the third fails in-band
            list(client.embed_stream(stream, timeout_s=30))
        client.list_models()

    content_type, after = scrape(metrics_server.metrics_url)
    assert content_type.startswith("text/plain")
    requests = "ssl_serve_requests_total"
    model = {"model": MODEL_NAME}
    assert value(after, requests, **model, method="Embed", code="OK") == 3
    assert value(after, requests, **model, method="Embed", code="INVALID_ARGUMENT") == 1
    assert value(after, requests, model=UNKNOWN_MODEL, method="Embed", code="NOT_FOUND") == 1
    assert value(after, requests, **model, method="EmbedStream", code="OK") == 2
    assert value(after, requests, **model, method="EmbedStream", code="INVALID_ARGUMENT") == 1
    assert value(after, requests, model="", method="ListModels", code="OK") == 1
    assert sum(v for k, v in after.items() if k[0] == requests) == 9

    # Only requests that reached the model are timed and counted as inputs.
    embed = {**model, "method": "Embed"}
    streamed = {**model, "method": "EmbedStream"}
    assert value(after, "ssl_serve_inputs_total", **embed) == 9
    assert value(after, "ssl_serve_inputs_total", **streamed) == 6
    for name in ("ssl_serve_queue_seconds", "ssl_serve_inference_seconds"):
        assert value(after, f"{name}_count", **embed) == 3
        assert value(after, f"{name}_count", **streamed) == 2
    assert value(after, "ssl_serve_inference_seconds_sum", **embed) > 0
    assert value(after, "ssl_serve_request_duration_seconds_count", **embed) == 4
    inputs_le = {
        le: value(after, "ssl_serve_request_inputs_bucket", **embed, le=le)
        for le in ("1.0", "2.0", "4.0", "+Inf")
    }
    assert inputs_le == {"1.0": 0, "2.0": 1, "4.0": 3, "+Inf": 3}
    assert value(after, "ssl_serve_request_inputs_sum", **embed) == 9
    assert value(after, "ssl_serve_tokens_total", **embed) == 0  # an image model
    assert value(after, "ssl_serve_models_loaded") == 1


# In a subprocess: an in-process EmbeddingServer registers the KServe stubs' protobuf package
# `inference`, which tritonclient (imported by other tests) registers too.
IN_PROCESS = """
import json, sys, urllib.request
from ssl_serve.server import EmbeddingServer, ServerConfig
repository = sys.argv[1]
out = {}
with EmbeddingServer(ServerConfig(repository, port=0, intra_op_threads=1)) as server:
    server.start()
    out["default"] = [server.metrics_port, server.metrics_address]
server = EmbeddingServer(ServerConfig(repository, port=0, intra_op_threads=1, metrics_port=0))
server.start()
url = f"http://{server.metrics_address}/metrics"
with urllib.request.urlopen(url, timeout=10) as response:
    out["text"] = response.read().decode()
server.stop(grace_s=1)
try:
    urllib.request.urlopen(url, timeout=5)
    out["after_stop"] = "answered"
except OSError as e:
    out["after_stop"] = type(e).__name__
print(json.dumps(out))
"""


def test_metrics_endpoint_is_off_by_default_and_closes_on_stop(repository: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, str(repository)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["default"] == [None, None]
    families = {f.name: f for f in text_string_to_metric_families(out["text"])}
    assert families["ssl_serve_models_loaded"].samples[0].value == 1
    assert out["after_stop"] == "URLError"  # connection refused: the port is closed


def test_server_metrics_fold_unknown_models_and_count_tokens() -> None:
    metrics = ServerMetrics(["minilm"])
    assert [metrics.model_label(n) for n in ("minilm", "", "evil-{x}")] == [
        "minilm",
        "",
        UNKNOWN_MODEL,
    ]
    metrics.observe_inference(
        "Embed", "minilm", queue_s=0.002, inference_s=0.01, inputs=3, tokens=41
    )
    metrics.observe_inference("Embed", "minilm", queue_s=0.0, inference_s=0.02, inputs=2, tokens=9)
    metrics.track_models_loaded(lambda: 2)
    registry = metrics.registry
    labels = {"model": "minilm", "method": "Embed"}
    assert registry.get_sample_value("ssl_serve_tokens_total", labels) == 50
    assert registry.get_sample_value("ssl_serve_inputs_total", labels) == 5
    assert registry.get_sample_value("ssl_serve_inference_seconds_sum", labels) == pytest.approx(
        0.03
    )
    assert (
        registry.get_sample_value("ssl_serve_queue_seconds_bucket", {**labels, "le": "0.0025"}) == 2
    )
    assert registry.get_sample_value("ssl_serve_models_loaded") == 2
