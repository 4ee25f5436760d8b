"""Server start-up: a repository with no model version is an error that shows the layout."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from serve_helpers import MODEL_NAME

from ssl_serve.errors import BundleError
from ssl_serve.repository import ModelRepository
from ssl_serve.server import EmbeddingServer, ServerConfig


def _start_error(repository: Path) -> str:
    with pytest.raises(BundleError) as info:
        EmbeddingServer(ServerConfig(repository=repository, port=0))
    assert info.value.path == repository
    return str(info.value)


def test_empty_repository_fails_with_the_expected_layout(tmp_path: Path) -> None:
    (tmp_path / "shirts").mkdir()  # a model folder without versions
    (tmp_path / "README.txt").write_text("not a model")
    message = _start_error(tmp_path)
    assert message == (
        f"{tmp_path}: no model versions found; expected {tmp_path}/<name>/<version>/bundle.json"
    )


def test_bundle_folder_as_repository_says_where_the_repository_is(repository: Path) -> None:
    bundle = repository / MODEL_NAME / "1"
    message = _start_error(bundle)
    assert f"{bundle} is a bundle folder (it holds bundle.json), not a repository" in message
    assert f"pass the folder two levels up ({repository})" in message
    assert f"`mkdir -p repo/NAME && mv {bundle} repo/NAME/1`" in message


def test_model_folder_as_repository_says_to_pass_its_parent(
    repository: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ssl_serve.repository"):
        message = _start_error(repository / MODEL_NAME)
    assert "version folder(s) 1 hold bundle.json), not a repository: pass its parent" in message
    assert message.endswith(f"pass its parent ({repository})")
    # The scan's warning names the misplaced bundle folder, not "no version folders".
    assert [r.getMessage() for r in caplog.records] == [
        f"{repository / MODEL_NAME / '1'}: a bundle folder where a model folder belongs (the "
        "layout is <repository>/<name>/<version>/bundle.json); skipped"
    ]


def test_model_folder_without_versions_is_skipped_with_a_warning(
    repository: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(repository / MODEL_NAME, repo / MODEL_NAME)
    (repo / "shirts").mkdir()
    with caplog.at_level(logging.WARNING, logger="ssl_serve.repository"):
        entries = ModelRepository(repo).entries()
    assert [(e.name, e.version) for e in entries] == [(MODEL_NAME, "1")]
    assert [r.getMessage() for r in caplog.records] == [
        f"{repo / 'shirts'}: model folder has no version folders; skipped"
    ]
