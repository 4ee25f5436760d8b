"""SIGTERM while clients keep sending: a request in flight is answered in full, later ones are
refused with UNAVAILABLE, and the server exits 0."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import numpy as np
from serve_helpers import MODEL_NAME, png_bytes, start_server

from ssl_serve.client import EmbeddingClient
from ssl_serve.errors import RemoteError

BIG_REQUEST = 4096  # real test images in the request in flight at SIGTERM
SMALL_REQUEST = 64  # images per request of the clients that keep sending
CLIENTS = 3


def test_sigterm_answers_the_request_in_flight(repository: Path, tmp_path: Path) -> None:
    import ssl_data

    test_images, _ = ssl_data.load_fashion_mnist("test")
    images = [png_bytes(img) for img in test_images[:BIG_REQUEST]]
    srv = start_server(repository, tmp_path / "server.log")  # --grace-s 5
    with EmbeddingClient(srv.address, timeout_s=120) as client:
        client.wait_until_serving(timeout_s=60)
        expected = client.embed_images(MODEL_NAME, images, batch_size=BIG_REQUEST)
    # (sent, ended, status, max |answer - expected|) per request of the looping clients
    outcomes: list[tuple[float, float, str, float]] = []
    big: dict[str, float | str] = {}
    stop = threading.Event()

    def send_until_stopped(k: int) -> None:
        rows = slice(k * SMALL_REQUEST, (k + 1) * SMALL_REQUEST)
        with EmbeddingClient(srv.address, timeout_s=120, retries=0) as c:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    got = c.embed_images(MODEL_NAME, images[rows], batch_size=SMALL_REQUEST)
                    diff = float(np.abs(got - expected[rows]).max())
                    outcomes.append((sent, time.monotonic(), "OK", diff))
                except RemoteError as e:
                    outcomes.append((sent, time.monotonic(), e.code.name, np.inf))
                    time.sleep(0.01)

    def send_big() -> None:
        with EmbeddingClient(srv.address, timeout_s=120, retries=0) as c:
            big["sent"] = time.monotonic()
            try:
                got = c.embed_images(MODEL_NAME, images, batch_size=BIG_REQUEST)
                big["status"], big["diff"] = "OK", float(np.abs(got - expected).max())
            except RemoteError as e:
                big["status"] = e.code.name
            big["ended"] = time.monotonic()

    threads = [threading.Thread(target=send_until_stopped, args=(k,)) for k in range(CLIENTS)]
    for thread in threads:
        thread.start()
    big_thread = threading.Thread(target=send_big)
    try:
        while len(outcomes) < 2 * CLIENTS:
            time.sleep(0.01)
        big_thread.start()
        time.sleep(0.3)  # the big request is on the server and running
        sigterm_at = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=60) == 0
    finally:
        stop.set()
        for thread in [*threads, big_thread]:
            thread.join(timeout=120)
    # The request in flight at SIGTERM was answered in full, after it.
    assert big["status"] == "OK" and big["diff"] <= 1e-5, big
    assert big["sent"] < sigterm_at < big["ended"], (big, sigterm_at)
    # Every other request was answered in full, or refused as the server left (UNAVAILABLE).
    # grpcio answers CANCELLED to a request that reaches the server just as it starts shutting
    # down, before a handler takes it: allowed only for requests sent from 250 ms before SIGTERM
    # (seen within 3 ms of it; the margin is for a loaded machine's thread switches).
    for sent, _, status, diff in outcomes:
        assert status in ("OK", "UNAVAILABLE") or (
            status == "CANCELLED" and sent > sigterm_at - 0.25
        ), (status, sent - sigterm_at)
        assert status != "OK" or diff <= 1e-5
    assert any(status == "UNAVAILABLE" and sent > sigterm_at for sent, _, status, _ in outcomes)
    assert "received SIGTERM; draining" in srv.log.read_text()
