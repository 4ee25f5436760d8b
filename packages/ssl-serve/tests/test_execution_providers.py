"""onnxruntime execution providers: `--device`, the [cpu]/[gpu] wheels, and no silent fallback.

This machine has the CPU wheel `onnxruntime` only, so asking for CUDA must fail at start, naming
the `[gpu]` extra, never serve on the CPU instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from serve_helpers import MODEL_NAME

from ssl_serve.errors import ExecutionProviderError
from ssl_serve.repository import ModelRepository
from ssl_serve.runtime import (
    DEVICE_PROVIDERS,
    create_session,
    execution_providers,
    installed_onnxruntime_wheels,
)
from ssl_serve.server.models import ModelRegistry

BLOCK_ORT = "import sys; sys.modules['onnxruntime'] = None\n"


def test_cpu_is_the_default_and_runs_on_the_cpu(repository: Path) -> None:
    assert installed_onnxruntime_wheels() == ["onnxruntime"]
    assert execution_providers() == ("CPUExecutionProvider",)
    session = create_session(
        repository / MODEL_NAME / "1" / "model.onnx", 1, DEVICE_PROVIDERS["cpu"]
    )
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_cuda_without_onnxruntime_gpu_names_the_extra() -> None:
    with pytest.raises(ExecutionProviderError, match=r"CUDAExecutionProvider.*ssl-serve\[gpu\]"):
        execution_providers("cuda")
    with pytest.raises(ValueError, match=r"\['cpu', 'cuda'\], got 'tpu'"):
        execution_providers("tpu")


def test_a_session_that_falls_back_to_the_cpu_is_refused(repository: Path) -> None:
    # onnxruntime itself only warns and runs on the CPU when CUDA is asked for but missing.
    model = repository / MODEL_NAME / "1" / "model.onnx"
    with (
        pytest.warns(UserWarning, match="'CUDAExecutionProvider' is not in available provider"),
        pytest.raises(ExecutionProviderError, match="runs the session on CPUExecutionProvider"),
    ):
        create_session(model, 1, DEVICE_PROVIDERS["cuda"])


def test_both_onnxruntime_wheels_installed_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real (empty) onnxruntime-gpu distribution beside the CPU wheel, as `pip install
    # ssl-serve[cpu,gpu]` would leave: importlib.metadata finds both.
    info = tmp_path / "onnxruntime_gpu-1.20.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: onnxruntime-gpu\nVersion: 1.20.0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert installed_onnxruntime_wheels() == ["onnxruntime", "onnxruntime-gpu"]
    with pytest.raises(ExecutionProviderError, match="both onnxruntime and onnxruntime-gpu"):
        execution_providers("cpu")


def test_registry_reports_the_provider_its_sessions_run_on(repository: Path) -> None:
    registry = ModelRegistry(ModelRepository(repository), intra_op_threads=1)
    [model] = registry.versions(MODEL_NAME)
    assert model.execution_providers == []  # not loaded yet
    registry.load_all()
    assert model.execution_providers == ["CPUExecutionProvider"]


def test_serve_cli_refuses_cuda_and_names_the_extra(repository: Path) -> None:
    cmd = ["-m", "ssl_serve.cli", "serve", "--repository", str(repository), "--port", "0"]
    out = subprocess.run([sys.executable, *cmd, "--device", "cuda"], capture_output=True, text=True)
    assert out.returncode == 1
    assert "ssl-serve: error: --device cuda needs CUDAExecutionProvider" in out.stderr
    assert "ssl-serve[gpu]" in out.stderr


def test_serve_without_onnxruntime_names_the_extras(repository: Path) -> None:
    code = BLOCK_ORT + (
        "from ssl_serve.cli import main\n"
        f"sys.exit(main(['serve', '--repository', {str(repository)!r}, '--port', '0']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 1, out.stderr
    assert "pip install 'ssl-serve[cpu]'" in out.stderr
    assert "Traceback" not in out.stderr
