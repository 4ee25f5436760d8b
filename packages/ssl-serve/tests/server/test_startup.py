"""Server start-up: a repository with no model version is an error that shows the layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_helpers import MODEL_NAME

from ssl_serve.errors import BundleError
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


def test_model_folder_as_repository_says_to_pass_its_parent(repository: Path) -> None:
    message = _start_error(repository / MODEL_NAME)
    assert "version folder(s) 1 hold bundle.json), not a repository: pass its parent" in message
    assert message.endswith(f"pass its parent ({repository})")
