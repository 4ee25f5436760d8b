"""Hot reload (`serve --reload-interval-s`) on a real server process with real bundles.

Two real exports of the Fashion-MNIST `small_cnn` checkpoint with different init seeds (A: the
session's bundle, B: seed 1) give two valid models whose embeddings differ; references are
in-process onnxruntime on the same real test images. Each test works on its own model names,
so the tests do not depend on each other's order.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serve_helpers import (
    MODEL_NAME,
    ServerProcess,
    png_bytes,
    reference_preprocess,
    start_server,
    stop_server,
    write_checkpoint,
)
from tritonclient.grpc import service_pb2, service_pb2_grpc

from ssl_serve.client import EmbeddingClient
from ssl_serve.errors import RemoteError

INTERVAL_S = 0.3
WAIT_S = 60.0


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> float:
    """Poll ``condition`` until true; returns the seconds it took."""
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - t0


def _copy_bundle(source: Path, target: Path) -> None:
    """Copy a bundle the way an operator should: into a hidden folder, then rename into place."""
    tmp = target.parent / f".{target.name}.tmp"
    shutil.copytree(source, tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(target)


@pytest.fixture(scope="module")
def bundle_a(repository: Path) -> Path:
    return repository / MODEL_NAME / "1"


@pytest.fixture(scope="module")
def bundle_b(tmp_path_factory: pytest.TempPathFactory, fashion_images: np.ndarray) -> Path:
    """The same encoder with another init seed, exported by `export_checkpoint`."""
    from ssl_serve.export import export_checkpoint

    run = write_checkpoint(tmp_path_factory.mktemp("run-b"), fashion_images, seed=1)
    out = tmp_path_factory.mktemp("bundle-b") / "b"
    export_checkpoint(run.run, out, name=MODEL_NAME, version="1")
    return out


@pytest.fixture(scope="module")
def reload_repo(tmp_path_factory: pytest.TempPathFactory, bundle_a: Path) -> Path:
    repo = tmp_path_factory.mktemp("reload-repo")
    for name, version in [("add", "1"), ("swap", "1"), ("steady", "1"), ("gone", "1")]:
        _copy_bundle(bundle_a, repo / name / version)
    _copy_bundle(bundle_a, repo / "gone" / "2")
    return repo


@pytest.fixture(scope="module")
def reload_server(
    tmp_path_factory: pytest.TempPathFactory, reload_repo: Path
) -> Iterator[ServerProcess]:
    srv = start_server(
        reload_repo,
        tmp_path_factory.mktemp("reload") / "server.log",
        timeout_s=120,
        args=["--reload-interval-s", str(INTERVAL_S)],
    )
    yield srv
    if srv.proc.poll() is None:
        assert stop_server(srv) == 0, srv.log.read_text()


@pytest.fixture(scope="module")
def client(reload_server: ServerProcess) -> Iterator[EmbeddingClient]:
    with EmbeddingClient(reload_server.address, timeout_s=30, retries=0) as c:
        c.wait_until_serving(timeout_s=60)
        yield c


@pytest.fixture(scope="module")
def images(fashion_test_images: np.ndarray) -> list[bytes]:
    return [png_bytes(img) for img in fashion_test_images[:4]]


def _reference(bundle: Path, fashion_test_images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(bundle / "model.onnx"))
    pixels = reference_preprocess(fashion_test_images[:4])
    return session.run(["embedding"], {"pixel_values": pixels})[0]


def _versions(client: EmbeddingClient, name: str) -> list[str]:
    return [m.version for m in client.list_models() if m.name == name]


def test_a_and_b_differ(bundle_a: Path, bundle_b: Path, fashion_test_images: np.ndarray) -> None:
    a = _reference(bundle_a, fashion_test_images)
    b = _reference(bundle_b, fashion_test_images)
    assert np.abs(a - b).max() > 0.1  # else the swap tests could not tell them apart


def test_added_version_appears_and_answers(
    client: EmbeddingClient,
    reload_server: ServerProcess,
    reload_repo: Path,
    bundle_b: Path,
    images: list[bytes],
    fashion_test_images: np.ndarray,
) -> None:
    assert _versions(client, "add") == ["1"]
    _copy_bundle(bundle_b, reload_repo / "add" / "2")
    took = _wait_for(lambda: _versions(client, "add") == ["1", "2"], "add/2 listed")
    assert took < 30
    info = client.get_model("add")  # "" resolves to the highest version now
    assert (info.version, info.ready) == ("2", True)
    expected = _reference(bundle_b, fashion_test_images)
    served = client.embed_images("add", images, version="2")
    assert np.abs(served - expected).max() <= 1e-5
    assert np.abs(client.embed_images("add", images) - expected).max() <= 1e-5
    with grpc.insecure_channel(reload_server.address) as channel:
        ready = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelReady(
            service_pb2.ModelReadyRequest(name="add", version="2"), timeout=10
        )
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="add"), timeout=10
        )
    assert ready.ready
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_replaced_model_swaps_without_a_failed_request(
    client: EmbeddingClient,
    reload_repo: Path,
    bundle_a: Path,
    bundle_b: Path,
    images: list[bytes],
    fashion_test_images: np.ndarray,
) -> None:
    a = _reference(bundle_a, fashion_test_images)
    b = _reference(bundle_b, fashion_test_images)
    assert np.abs(client.embed_images("swap", images, version="1") - a).max() <= 1e-5
    stop = threading.Event()
    errors: list[BaseException] = []
    answers: list[str] = []

    def hammer() -> None:
        while not stop.is_set():
            try:
                emb = client.embed_images("swap", images, version="1")
            except BaseException as e:
                errors.append(e)
                continue
            if np.abs(emb - a).max() <= 1e-5:
                answers.append("a")
            elif np.abs(emb - b).max() <= 1e-5:
                answers.append("b")
            else:
                answers.append("other")

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        _wait_for(lambda: len(answers) >= 20, "requests before the swap")
        # Replace model.onnx in place (atomically, by rename), as `cp new.onnx` + `mv` would.
        folder = reload_repo / "swap" / "1"
        shutil.copyfile(bundle_b / "model.onnx", folder / ".model.onnx.new")
        os.replace(folder / ".model.onnx.new", folder / "model.onnx")
        _wait_for(lambda: answers[-1:] == ["b"], "answers of the new model")
        n = len(answers)
        _wait_for(lambda: len(answers) >= n + 20, "requests after the swap")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert errors == []
    assert "other" not in answers
    first_b = answers.index("b")
    assert answers[:first_b] == ["a"] * first_b and first_b >= 20
    # Threads race, so a few old answers may land after the first new one; never many.
    assert answers[first_b:].count("a") <= len(threads)
    assert np.abs(client.embed_images("swap", images, version="1") - b).max() <= 1e-5


def test_broken_bundle_is_logged_and_the_old_one_keeps_serving(
    client: EmbeddingClient,
    reload_server: ServerProcess,
    reload_repo: Path,
    bundle_a: Path,
    images: list[bytes],
    fashion_test_images: np.ndarray,
) -> None:
    a = _reference(bundle_a, fashion_test_images)
    # A new version whose model.onnx is not ONNX, and a garbage model.onnx over a served one.
    broken = reload_repo / ".broken"
    shutil.copytree(bundle_a, broken)
    (broken / "model.onnx").write_bytes(b"this is not an ONNX model")
    broken.rename(reload_repo / "steady" / "2")
    folder = reload_repo / "steady" / "1"
    (folder / ".model.onnx.new").write_bytes(b"\x00" * 100)
    os.replace(folder / ".model.onnx.new", folder / "model.onnx")

    def logged() -> bool:
        text = reload_server.log.read_text()
        return "steady/1 failed to load" in text and "steady/2 failed to load" in text

    _wait_for(logged, "both load failures logged")
    log = reload_server.log.read_text()
    assert "hot reload: steady/1 failed to load" in log and "version 1 keeps serving" in log
    assert _versions(client, "steady") == ["1"]
    assert np.abs(client.embed_images("steady", images) - a).max() <= 1e-5
    with pytest.raises(RemoteError) as e:
        client.embed_images("steady", images, version="2")
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    time.sleep(4 * INTERVAL_S)  # a failed folder is not retried (nor logged again) unchanged
    assert reload_server.log.read_text().count("steady/1 failed to load") == 1


def test_removed_version_is_not_found_afterwards(
    client: EmbeddingClient, reload_server: ServerProcess, reload_repo: Path, images: list[bytes]
) -> None:
    assert _versions(client, "gone") == ["1", "2"]
    shutil.rmtree(reload_repo / "gone" / "2")
    _wait_for(lambda: _versions(client, "gone") == ["1"], "gone/2 removed")
    with pytest.raises(RemoteError) as e:
        client.embed_images("gone", images, version="2")
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert client.get_model("gone").version == "1"
    client.embed_images("gone", images, version="1")

    shutil.rmtree(reload_repo / "gone")
    _wait_for(lambda: _versions(client, "gone") == [], "model gone removed")
    with pytest.raises(RemoteError) as e:
        client.embed_images("gone", images)
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    with grpc.insecure_channel(reload_server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="gone"), timeout=10
        )
    assert health.status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    assert "hot reload: removed gone/2" in reload_server.log.read_text()
