"""Model repository scanning: version order, explicit versions, errors naming what exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from serve_helpers import CONTRACT_EXAMPLE

from ssl_serve.errors import BundleError, ModelNotFoundError
from ssl_serve.repository import ModelRepository, version_sort_key


def _add(repo: Path, name: str, version: str, *, onnx: bool = True) -> Path:
    folder = repo / name / version
    folder.mkdir(parents=True)
    data = {**CONTRACT_EXAMPLE, "name": name, "version": version}
    (folder / "bundle.json").write_text(json.dumps(data))
    if onnx:
        (folder / "model.onnx").write_bytes(b"")
    return folder


def test_highest_version_is_numeric_and_explicit_versions_resolve(tmp_path: Path) -> None:
    for v in ("1", "2", "10"):
        _add(tmp_path, "shirts", v)
    _add(tmp_path, "shoes", "2026-11-29")
    (tmp_path / "shirts" / ".11.tmp-abcd").mkdir()  # an export in progress: skipped
    repo = ModelRepository(tmp_path)
    assert repo.names() == ["shirts", "shoes"]
    assert len(repo) == 4
    assert repo.resolve("shirts").version == "10"
    assert repo.resolve("shirts", "2").path == tmp_path / "shirts" / "2"
    assert repo.resolve("shoes").bundle.name == "shoes"
    assert [(e.name, e.version) for e in repo.entries()] == [
        ("shirts", "1"),
        ("shirts", "2"),
        ("shirts", "10"),
        ("shoes", "2026-11-29"),
    ]


def test_unknown_model_or_version_lists_what_exists(tmp_path: Path) -> None:
    _add(tmp_path, "shirts", "1")
    repo = ModelRepository(tmp_path)
    with pytest.raises(ModelNotFoundError, match="model 'hats' not found; available: shirts"):
        repo.resolve("hats")
    with pytest.raises(ModelNotFoundError, match="version '3' not found; available: 1"):
        repo.resolve("shirts", "3")


def test_version_folder_without_model_is_an_error(tmp_path: Path) -> None:
    _add(tmp_path, "shirts", "1", onnx=False)
    with pytest.raises(BundleError, match=r"lacks model\.onnx"):
        ModelRepository(tmp_path)
    with pytest.raises(BundleError, match="does not exist"):
        ModelRepository(tmp_path / "nope")


def test_version_sort_key_orders_integers_numerically() -> None:
    versions = ["10", "9", "2026-11-29", "1.0-rc", "100"]
    assert sorted(versions, key=version_sort_key) == ["1.0-rc", "2026-11-29", "9", "10", "100"]
