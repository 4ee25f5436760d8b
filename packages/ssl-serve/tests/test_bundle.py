"""bundle.json: the contract's example round-trips; bad files fail naming the file and key."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import CONTRACT_EXAMPLE

from ssl_serve.bundle import Bundle, read_bundle, write_bundle
from ssl_serve.errors import BundleError


def test_contract_example_round_trips_through_a_file(tmp_path: Path) -> None:
    bundle = Bundle.from_dict(CONTRACT_EXAMPLE)
    assert bundle.preprocessing.image_size == (28, 28)
    assert bundle.preprocessing.mean == (0.286,)
    assert bundle.input.shape == ("batch", 1, 28, 28)
    assert bundle.to_dict() == CONTRACT_EXAMPLE
    write_bundle(bundle, tmp_path)
    assert read_bundle(tmp_path) == bundle
    assert json.loads((tmp_path / "bundle.json").read_text()) == CONTRACT_EXAMPLE


def _broken(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(CONTRACT_EXAMPLE)
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("embedding_dim", KeyError, "embedding_dim"),
        ("format_version", 2, "format_version"),
        ("modality", "video", "modality"),
        ("embedding_dim", "128", "embedding_dim"),
        ("normalized", 1, "normalized"),
        ("preprocessing.channels", 2, "preprocessing.channels"),
        ("preprocessing.channels", "1", "key 'preprocessing.channels' must be int"),
        ("preprocessing.mean", ["a"], "key 'preprocessing.mean' must be float"),
        ("preprocessing.mean", [0.1, 0.2, 0.3], "preprocessing.mean"),
        ("preprocessing.std", [0.0], "preprocessing.std"),
        ("preprocessing.resize", "lanczos", "preprocessing.resize"),
        ("preprocessing.image_size", [28], "preprocessing.image_size"),
        ("embedding_dim", 64, "outputs[0]"),
        ("extra_key", 1, "extra_key"),
    ],
)
def test_invalid_bundle_json_names_file_and_key(
    tmp_path: Path, path: str, value: Any, named: str
) -> None:
    (tmp_path / "bundle.json").write_text(json.dumps(_broken(path, value)))
    with pytest.raises(BundleError) as info:
        read_bundle(tmp_path)
    assert str(tmp_path / "bundle.json") in str(info.value)
    assert named in str(info.value)


def test_missing_and_unparsable_bundle_json(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"bundle\.json: missing"):
        read_bundle(tmp_path)
    (tmp_path / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="cannot read it as JSON"):
        read_bundle(tmp_path / "bundle.json")
