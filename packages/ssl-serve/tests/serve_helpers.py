"""Test helpers: a hand-built checkpoint of real Fashion-MNIST images, PNG encoding, a server.

The checkpoint follows docs/contracts.md: a random-init `small_cnn` encoder (serving tests need
a fixed model, not a trained one) and 64 real training images as example inputs.
"""

from __future__ import annotations

import io
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[3]
MODEL_NAME = "fashion-mnist"
MEAN, STD = 0.2860, 0.3530
NUM_EXAMPLES = 64
RECIPE_YAML = f"""\
data:
  dataset: fashion_mnist
  image_size: 28
  channels: 1
  mean: [{MEAN}]
  std: [{STD}]
encoder:
  name: small_cnn
  in_channels: 1
method:
  name: simclr
"""
# Launches the CLI with torch made unimportable, proving the serving path never needs it.
NO_TORCH = (
    "import sys; sys.modules['torch'] = None; from ssl_serve.cli import main; sys.exit(main())"
)

# The example of docs/contracts.md, verbatim.
CONTRACT_EXAMPLE: dict[str, Any] = {
    "format_version": 1,
    "name": "fashion-mnist-simclr",
    "version": "1",
    "modality": "image",
    "inputs": [{"name": "pixel_values", "dtype": "float32", "shape": ["batch", 1, 28, 28]}],
    "outputs": [{"name": "embedding", "dtype": "float32", "shape": ["batch", 128]}],
    "embedding_dim": 128,
    "normalized": True,
    "preprocessing": {
        "image_size": [28, 28],
        "channels": 1,
        "resize": "bilinear",
        "scale": 0.00392156862745098,
        "mean": [0.286],
        "std": [0.353],
        "layout": "NCHW",
    },
    "validation": {
        "max_abs_diff": 1.2e-6,
        "min_cosine": 0.99999,
        "tolerance": 0.0001,
        "num_inputs": 64,
        "batch_sizes": [64, 7, 1],
    },
    "provenance": {
        "recipe_sha256": "...",
        "checkpoint": "step-00000500",
        "step": 500,
        "created": "2026-11-29T12:00:00Z",
        "versions": {
            "ssl_serve": "0.1.0",
            "ssl_models": "0.1.0",
            "torch": "2.13.0",
            "onnx": "1.23.2",
            "opset": 17,
        },
    },
}


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode ``(H, W) uint8`` (L) or ``(H, W, 3) uint8`` (RGB) as PNG."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def reference_preprocess(images: np.ndarray) -> np.ndarray:
    """Independent numpy preprocessing: ``(N, 28, 28) uint8`` -> ``(N, 1, 28, 28) float32``."""
    return ((images.astype(np.float64) / 255.0 - MEAN) / STD).astype(np.float32)[:, None]


@dataclass
class CheckpointFixture:
    run: Path
    step_dir: Path
    encoder: Any  # torch.nn.Module, eval mode
    pixel_values: np.ndarray


def write_checkpoint(
    run: Path, images: np.ndarray, *, recipe_yaml: str = RECIPE_YAML, seed: int = 0
) -> CheckpointFixture:
    """Write ``run/checkpoints/step-00000010`` by hand, per docs/contracts.md."""
    import safetensors.numpy
    import safetensors.torch
    import torch

    import ssl_models

    torch.manual_seed(seed)
    encoder = ssl_models.build_encoder({"name": "small_cnn", "in_channels": 1})
    # A few train-mode passes give BatchNorm non-trivial running statistics, as training would.
    pixel_values = reference_preprocess(images)
    encoder.train()
    with torch.no_grad():
        for _ in range(3):
            encoder(torch.from_numpy(pixel_values))
    encoder.eval()
    step_dir = run / "checkpoints" / "step-00000010"
    step_dir.mkdir(parents=True)
    state = {f"encoder.{k}": v.contiguous() for k, v in encoder.state_dict().items()}
    state["projection_head.0.weight"] = torch.zeros(4, 128)  # not exported: not the encoder
    safetensors.torch.save_file(state, str(step_dir / "model.safetensors"))
    (step_dir / "recipe.yaml").write_text(recipe_yaml)
    (step_dir / "trainer_state.json").write_text('{"step": 10, "epoch": 0}')
    safetensors.numpy.save_file(
        {"pixel_values": pixel_values, "images": np.ascontiguousarray(images[..., None])},
        str(step_dir / "example_inputs.safetensors"),
    )
    (run / "checkpoints" / "latest").write_text("step-00000010\n")
    return CheckpointFixture(run, step_dir, encoder, pixel_values)


@dataclass
class ServerProcess:
    address: str
    proc: subprocess.Popen[str]
    log: Path
    metrics_url: str | None = None


def start_server(
    repository: Path,
    log: Path,
    timeout_s: float = 60.0,
    *,
    metrics: bool = False,
    args: Sequence[str] = (),
) -> ServerProcess:
    """Start `ssl-serve serve --port 0` (torch blocked) and wait for its listening line.

    With ``metrics``, also ``--metrics-port 0``, and read the metrics URL from the next line.
    ``args`` are appended to the command (e.g. TLS or batching options).
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-c", NO_TORCH, "serve", "--repository", str(repository)]
    cmd += ["--port", "0", "--threads", "1", "--grace-s", "5"]
    if metrics:
        cmd += ["--metrics-port", "0"]
    cmd += list(args)
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout
    assert stdout is not None

    def pump() -> None:  # a thread, so the wait below can time out
        for text in stdout:
            lines.put(text)

    threading.Thread(target=pump, daemon=True).start()
    try:
        line = lines.get(timeout=timeout_s)
    except queue.Empty:
        proc.kill()
        raise AssertionError(
            f"server printed nothing in {timeout_s} s:\n{log.read_text()}"
        ) from None
    if not line.startswith("ssl-serve listening on "):
        proc.kill()
        raise AssertionError(f"unexpected first line {line!r}:\n{log.read_text()}")
    server = ServerProcess(line.split()[-1], proc, log)
    if metrics:
        line = lines.get(timeout=timeout_s)
        if not line.startswith("ssl-serve metrics on http://"):
            proc.kill()
            raise AssertionError(f"unexpected second line {line!r}:\n{log.read_text()}")
        server.metrics_url = line.split()[-1]
    return server


def stop_server(server: ServerProcess, timeout_s: float = 30.0) -> int:
    """SIGTERM the server and return its exit status."""
    server.proc.send_signal(signal.SIGTERM)
    return server.proc.wait(timeout=timeout_s)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str | None) -> Samples:
    """Every sample of a server's Prometheus endpoint, by (name, labels)."""
    assert url is not None
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode("utf-8")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample of :func:`scrape`'s result (0.0 when absent)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def run_threads(count: int, work: Callable[[int], None], timeout_s: float = 300) -> None:
    """Run ``work(i)`` on ``count`` threads that start together; re-raise the first error."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def main(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            work(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=main, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
    assert not any(t.is_alive() for t in threads), "client threads hung"
    if errors:
        raise errors[0]
