"""Tests of the release tooling: scripts/check_changelog.py on synthetic git histories, and the
metadata helpers of scripts/check_release.py on hand-made wheels. (The full release check builds
and installs real wheels, ~2 min; CI runs it as its own step.)"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def load_script(name: str) -> ModuleType:
    """Import scripts/<name>.py as a module (registered first: dataclasses look it up)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


check_changelog = load_script("check_changelog")
check_release = load_script("check_release")


def git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "HOME": str(repo),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def write(repo: Path, path: str, text: str) -> None:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)


def commit(repo: Path, message: str, files: dict[str, str] | None = None) -> str:
    """Write `files` ({path: text}), commit everything, return the commit hash."""
    for path, text in (files or {}).items():
        write(repo, path, text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Two packages, pkg-a and pkg-b, each with source, pyproject and CHANGELOG, one commit."""
    git(tmp_path, "init", "-q", "-b", "main")
    for name in ("pkg-a", "pkg-b"):
        write(tmp_path, f"packages/{name}/pyproject.toml", f'[project]\nname = "{name}"\n')
        write(tmp_path, f"packages/{name}/src/m.py", "x = 1\n")
        write(tmp_path, f"packages/{name}/CHANGELOG.md", "## [Unreleased]\n")
    commit(tmp_path, "initial")
    return tmp_path


def outcome(results: list) -> dict[str, bool]:
    return {r.name: r.ok for r in results}


def test_latest_mode_fails_when_source_follows_the_changelog(repo, capsys):
    assert outcome(check_changelog.check_latest(repo, False)) == {"pkg-a": True, "pkg-b": True}
    first = commit(repo, "speed up m", {"packages/pkg-a/src/m.py": "x = 2\n"})
    second = commit(
        repo, "pyproject dep", {"packages/pkg-a/pyproject.toml": '[project]\nname="a"\n'}
    )
    commit(repo, "tests only", {"packages/pkg-a/tests/t.py": ""})  # not source: not counted
    results = check_changelog.check_latest(repo, False)
    assert outcome(results) == {"pkg-a": False, "pkg-b": True}
    failing = next(r for r in results if r.name == "pkg-a")
    assert [c.sha for c in failing.commits] == [second, first]  # newest first, tests excluded
    assert check_changelog.main(["--repo", str(repo)]) == 1
    out = capsys.readouterr()
    assert "FAIL pkg-a" in out.out and "speed up m" in out.out and "pkg-a" in out.err

    commit(repo, "changelog", {"packages/pkg-a/CHANGELOG.md": "## [Unreleased]\n- faster m\n"})
    assert outcome(check_changelog.check_latest(repo, False)) == {"pkg-a": True, "pkg-b": True}
    assert check_changelog.main(["--repo", str(repo)]) == 0


def test_skip_trailer_and_working_tree(repo):
    commit(repo, "rename a local\n\nChangelog: skip", {"packages/pkg-b/src/m.py": "y = 1\n"})
    assert outcome(check_changelog.check_latest(repo, False)) == {"pkg-a": True, "pkg-b": True}
    write(repo, "packages/pkg-b/src/m.py", "y = 2\n")  # uncommitted
    assert outcome(check_changelog.check_latest(repo, False))["pkg-b"] is True
    assert outcome(check_changelog.check_latest(repo, True))["pkg-b"] is False
    write(repo, "packages/pkg-b/CHANGELOG.md", "## [Unreleased]\n- y\n")
    assert outcome(check_changelog.check_latest(repo, True))["pkg-b"] is True


def test_range_mode_and_default_base(repo):
    base = git(repo, "rev-parse", "HEAD")
    assert check_changelog.default_base(repo) is None  # no origin/main: latest mode
    git(repo, "update-ref", "refs/remotes/origin/main", base)
    assert check_changelog.default_base(repo) is None  # HEAD is on origin/main
    # A changelog entry written *before* the source change still counts in range mode.
    commit(repo, "entry", {"packages/pkg-a/CHANGELOG.md": "## [Unreleased]\n- m\n"})
    commit(repo, "change a", {"packages/pkg-a/src/m.py": "x = 3\n"})
    change_b = commit(repo, "change b", {"packages/pkg-b/src/m.py": "x = 4\n"})
    assert check_changelog.default_base(repo) == "origin/main"
    results = check_changelog.check_range(repo, "origin/main", False)
    assert outcome(results) == {"pkg-a": True, "pkg-b": False}
    assert [c.sha for c in results[1].commits] == [change_b]
    assert check_changelog.main(["--repo", str(repo)]) == 1
    assert check_changelog.main(["--repo", str(repo), "--base", "HEAD~1"]) == 1
    assert check_changelog.main(["--repo", str(repo), "--base", "HEAD"]) == 0
    assert check_changelog.main(["--repo", str(repo), "--base", "no-such-ref"]) == 2


def test_current_history_passes_or_names_real_commits():
    """On this repository every failing package is reported with at least one commit or change."""
    root = SCRIPTS.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    for r in check_changelog.check_latest(root, False):
        assert r.ok or r.commits, r


def make_wheel(path: Path, name: str, version: str, requires: list[str], scripts: dict) -> Path:
    """A minimal wheel file: METADATA, entry_points.txt and RECORD (hashes as given)."""
    dist_info = f"{name.replace('-', '_')}-{version}.dist-info"
    meta = ["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    entry = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())
    wheel = path / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{dist_info}/METADATA", "\n".join(meta) + "\n")
        zf.writestr(f"{dist_info}/entry_points.txt", entry)
        zf.writestr(f"{dist_info}/RECORD", f"m/__init__.py,sha256=abc,3\n{dist_info}/RECORD,,\n")
    return wheel


def test_wheel_metadata_and_record(tmp_path):
    wheel = make_wheel(
        tmp_path, "ssl-train", "0.3.1", ["ssl-data<0.2,>=0.1", 'onnx; extra == "x"'], {"t": "m:f"}
    )
    name, version, requires, scripts = check_release.wheel_metadata(wheel)
    assert (name, version, scripts) == ("ssl-train", Version("0.3.1"), ["t"])
    assert [str(r) for r in requires] == ["ssl-data<0.2,>=0.1", 'onnx; extra == "x"']
    assert check_release.wheel_record(wheel) == {"m/__init__.py": "sha256=abc"}


@pytest.mark.parametrize(
    ("requirement", "built_version", "ok"),
    [
        ("ssl-data>=0.1,<0.2", "0.1.0", True),
        ("ssl-data>=0.1,<0.2", "0.2.0", False),  # a minor bump must widen the dependant's range
        ("ssl_data>=0.1", "0.1.0rc1", False),  # pre-release below the floor
        ('ssl-data>=0.2; extra == "export"', "0.1.5", False),  # extras are checked too
        ("numpy>=1.24", "0.1.0", None),  # not one of ours: no row
    ],
)
def test_internal_ranges(tmp_path, requirement, built_version, ok):
    data = check_release.Artefacts(
        "ssl-data", Version(built_version), tmp_path / "a.tar.gz", tmp_path / "a.whl"
    )
    train = check_release.Artefacts(
        "ssl-train", Version("0.1.0"), tmp_path / "b.tar.gz", tmp_path / "b.whl",
        requires=[Requirement(requirement)],
    )  # fmt: skip
    report = check_release.Report()
    check_release.check_internal_ranges(train, {"ssl-data": data}, report)
    if ok is None:
        assert report.rows == []
    else:
        assert [(r.check, r.ok) for r in report.rows] == [("range on ssl-data", ok)]
        assert built_version in report.rows[0].detail
