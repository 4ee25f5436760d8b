"""Shared fixtures: real Fashion-MNIST images, a checkpoint, its exported bundle, a server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path; the helper
# module has a name no other package's tests use.
sys.path.insert(0, str(Path(__file__).parent))

from serve_helpers import (
    MODEL_NAME,
    NUM_EXAMPLES,
    CheckpointFixture,
    ServerProcess,
    start_server,
    stop_server,
    write_checkpoint,
)


@pytest.fixture(scope="session")
def fashion_images() -> np.ndarray:
    """The first 64 real Fashion-MNIST training images, ``(64, 28, 28) uint8``."""
    import ssl_data

    images, _ = ssl_data.load_fashion_mnist("train")
    return np.ascontiguousarray(images[:NUM_EXAMPLES])


@pytest.fixture(scope="session")
def fashion_test_images() -> np.ndarray:
    """16 real Fashion-MNIST test images, ``(16, 28, 28) uint8`` (not the export examples)."""
    import ssl_data

    images, _ = ssl_data.load_fashion_mnist("test")
    return np.ascontiguousarray(images[:16])


@pytest.fixture(scope="session")
def checkpoint(
    tmp_path_factory: pytest.TempPathFactory, fashion_images: np.ndarray
) -> CheckpointFixture:
    """A training run folder with one checkpoint (see :func:`write_checkpoint`)."""
    return write_checkpoint(tmp_path_factory.mktemp("run"), fashion_images)


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory, checkpoint: CheckpointFixture) -> Path:
    """A model repository holding the checkpoint exported as `fashion-mnist/1`."""
    from ssl_serve.export import export_checkpoint

    repo = tmp_path_factory.mktemp("repository")
    export_checkpoint(checkpoint.run, repo / MODEL_NAME / "1", name=MODEL_NAME, version="1")
    return repo


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, repository: Path) -> Iterator[ServerProcess]:
    """A real `ssl-serve serve` subprocess on a free port, serving :func:`repository`."""
    srv = start_server(repository, tmp_path_factory.mktemp("server") / "server.log")
    yield srv
    if srv.proc.poll() is None:
        assert stop_server(srv) == 0, srv.log.read_text()
