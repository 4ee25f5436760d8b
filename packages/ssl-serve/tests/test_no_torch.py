"""The serving runtime imports and runs without torch; `export` then says what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from serve_helpers import NO_TORCH

BLOCK = "import sys; sys.modules['torch'] = None\n"


def test_runtime_modules_import_with_torch_blocked() -> None:
    code = BLOCK + (
        "import ssl_serve, ssl_serve.server, ssl_serve.client, ssl_serve.cli, ssl_serve.runtime\n"
        "import ssl_serve.preprocess, ssl_serve.repository, ssl_serve.bundle, ssl_serve.triton\n"
        "assert sys.modules['torch'] is None\n"
        "assert 'ssl_serve.export' not in sys.modules\n"
        # The KServe stubs register protobuf package `inference` (as tritonclient's do): only
        # a constructed server imports them.
        "assert 'ssl_serve.kserve.grpc_service_pb2' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_export_without_torch_names_the_extra(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", NO_TORCH, "export", str(tmp_path), "--output"]
    cmd += [str(tmp_path / "bundle"), "--name", "m"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 1
    assert "install ssl-serve[export]" in out.stderr
    assert not (tmp_path / "bundle").exists()
