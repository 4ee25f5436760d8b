"""`ssl-serve --log-format json`: every stderr line of a real server is one JSON object."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import serve_helpers
from serve_helpers import MODEL_NAME, png_bytes, start_server, stop_server

from ssl_serve.client import EmbeddingClient
from ssl_serve.errors import RemoteError
from ssl_serve.server.logs import JsonFormatter


def test_server_stderr_is_json_lines_with_request_fields(
    tmp_path: Path,
    repository: Path,
    fashion_test_images: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = tmp_path / "server.log"
    # --log-format and --log-level are options of `ssl-serve` itself, before the subcommand;
    # start_server puts its arguments after `serve`, so they go into its launcher instead.
    launcher = serve_helpers.NO_TORCH.replace(
        "main()", "main(['--log-format', 'json', '--log-level', 'DEBUG', *sys.argv[1:]])"
    )
    assert launcher != serve_helpers.NO_TORCH
    monkeypatch.setattr(serve_helpers, "NO_TORCH", launcher)
    srv = start_server(repository, log, timeout_s=120)
    with EmbeddingClient(srv.address, timeout_s=30) as client:
        client.wait_until_serving(timeout_s=60)
        client.embed_images(MODEL_NAME, [png_bytes(fashion_test_images[0])])
        with pytest.raises(RemoteError):
            client.embed_images("no-such-model", [png_bytes(fashion_test_images[0])])
    assert stop_server(srv) == 0, log.read_text()

    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records
    for r in records:
        assert {"time", "level", "logger", "message"} <= r.keys()
        assert r["time"].endswith("Z") and r["level"] in {"DEBUG", "INFO", "WARNING", "ERROR"}
    requests = [r for r in records if r.get("method") == "Embed"]
    ok = [r for r in requests if r["code"] == "OK"]
    missing = [r for r in requests if r["code"] == "NOT_FOUND"]
    assert len(ok) == 1 and len(missing) == 1
    assert ok[0]["model"] == MODEL_NAME and ok[0]["level"] == "DEBUG"
    assert isinstance(ok[0]["ms"], float) and ok[0]["ms"] >= 0
    assert missing[0]["model"] == "no-such-model" and missing[0]["level"] == "INFO"
    assert "not found" in missing[0]["message"]
    assert any(r["message"].startswith("serving 1 model version(s)") for r in records)
    assert any(r["logger"] == "ssl_serve.server.models" for r in records)


def test_json_formatter_keeps_extra_fields_and_exceptions() -> None:
    record = logging.LogRecord("x.y", logging.ERROR, __file__, 1, "a %s", ("b",), None)
    record.model = "m"
    record.code = grpc.StatusCode.OK  # not JSON: written as its str
    out = json.loads(JsonFormatter().format(record))
    assert out["message"] == "a b" and out["logger"] == "x.y" and out["level"] == "ERROR"
    assert out["model"] == "m" and out["code"] == str(grpc.StatusCode.OK)
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    out = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in out["exception"]
    assert "\n" not in JsonFormatter().format(record)
