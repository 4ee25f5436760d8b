"""Check that every package whose source changed has a CHANGELOG entry (issue 8, Releases).

A package's *source* is `packages/<name>/src/` and `packages/<name>/pyproject.toml` (its
dependencies are part of what users get). Two modes:

- **range** (a branch or pull request): the commits in `BASE..HEAD`, where BASE is the merge-base of
  HEAD with `--base` (default `origin/main` when that ref exists and HEAD is ahead of it). A package
  whose source changed in the range must have its `CHANGELOG.md` changed in the range too.
- **latest** (a fresh clone of main, or HEAD already on `origin/main`): per package, the latest
  commit touching its source must be the same commit as, or an ancestor of, the latest commit
  touching its `CHANGELOG.md`. A package whose source changed after its CHANGELOG's last change
  fails, and the commits since that change are listed.

A commit whose message has a line `Changelog: skip` (for a refactor or a comment fix that users
cannot see) is not counted as a source change. `--working-tree` also counts uncommitted changes
(staged or not), for a check before committing.

Usage (from the repository root)::

    python scripts/check_changelog.py                  # range against origin/main, else latest
    python scripts/check_changelog.py --base v0.1.0    # range from a ref
    python scripts/check_changelog.py --latest         # latest mode wherever HEAD is
    python scripts/check_changelog.py --working-tree   # also count uncommitted changes

Exit status: 0 when every package passes, 1 when one fails, 2 for a usage or git error.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP_TRAILER = "changelog: skip"


class GitError(RuntimeError):
    """A git command failed; the message names the command and git's own error."""


@dataclass(frozen=True)
class Commit:
    """One commit: abbreviated hash and subject line."""

    sha: str
    subject: str

    def __str__(self) -> str:
        return f"{self.sha[:10]} {self.subject}"


@dataclass
class PackageResult:
    """The outcome for one package: `ok` and the commits that changed its source unrecorded."""

    name: str
    ok: bool
    detail: str
    commits: list[Commit] = field(default_factory=list)


def git(repo: Path, *args: str) -> str:
    """Run `git -C repo args...` and return its stdout.

    Raises:
        GitError: git exited non-zero (the message names the command and its stderr).
    """
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise GitError(f"`git {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc.stdout


def ref_exists(repo: Path, ref: str) -> bool:
    """Whether `ref` names a commit in `repo`."""
    proc = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0


def packages(repo: Path) -> list[str]:
    """Names of the folders under `repo/packages/` that hold a `pyproject.toml`, sorted."""
    return sorted(p.parent.name for p in (repo / "packages").glob("*/pyproject.toml"))


def source_paths(name: str) -> list[str]:
    """The repository paths whose changes count as source changes of package `name`."""
    return [f"packages/{name}/src", f"packages/{name}/pyproject.toml"]


def changelog_path(name: str) -> str:
    """The repository path of package `name`'s CHANGELOG."""
    return f"packages/{name}/CHANGELOG.md"


def commits_touching(repo: Path, rev_range: str, paths: list[str]) -> list[Commit]:
    """Commits of `rev_range` (newest first) that touch `paths`, without `Changelog: skip` ones."""
    out = git(repo, "log", "--format=%H%x1f%s%x1f%b%x1e", rev_range, "--", *paths)
    commits = []
    for record in out.split("\x1e"):
        if not record.strip():
            continue
        sha, subject, body = record.strip("\n").split("\x1f", 2)
        lines = {line.strip().lower() for line in body.splitlines()}
        if SKIP_TRAILER not in lines:
            commits.append(Commit(sha, subject))
    return commits


def uncommitted(repo: Path, paths: list[str]) -> bool:
    """Whether `paths` differ between HEAD and the working tree (staged or not)."""
    return bool(git(repo, "diff", "--name-only", "HEAD", "--", *paths).strip())


def describe(commits: list[Commit], dirty: bool) -> str:
    """'2 commit(s)', 'uncommitted changes' or '2 commit(s) and uncommitted changes'."""
    parts = [f"{len(commits)} commit(s)"] if commits else []
    return " and ".join([*parts, "uncommitted changes"] if dirty else parts)


def check_range(repo: Path, base: str, working_tree: bool) -> list[PackageResult]:
    """Range mode: a package with source commits in `base..HEAD` needs a CHANGELOG change there.

    Args:
        repo: the repository root.
        base: a commit; the range is `merge-base(base, HEAD)..HEAD`.
        working_tree: also count uncommitted changes as changes of the range.

    Raises:
        GitError: `base` is not a commit, or git fails.
    """
    merge_base = git(repo, "merge-base", base, "HEAD").strip()
    rev_range = f"{merge_base}..HEAD"
    results = []
    for name in packages(repo):
        changed = commits_touching(repo, rev_range, source_paths(name))
        src_dirty = working_tree and uncommitted(repo, source_paths(name))
        logged = bool(
            git(repo, "log", "--format=%H", rev_range, "--", changelog_path(name)).strip()
        )
        logged = logged or (working_tree and uncommitted(repo, [changelog_path(name)]))
        if not changed and not src_dirty:
            results.append(PackageResult(name, True, "source unchanged"))
        elif logged:
            results.append(PackageResult(name, True, "source and CHANGELOG changed", changed))
        else:
            detail = (
                f"source has {describe(changed, src_dirty)} since {merge_base[:10]}, "
                f"{changelog_path(name)} did not"
            )
            results.append(PackageResult(name, False, detail, changed))
    return results


def check_latest(repo: Path, working_tree: bool) -> list[PackageResult]:
    """Latest mode: no source commit of a package may follow its CHANGELOG's last change.

    Args:
        repo: the repository root.
        working_tree: uncommitted source changes also need an uncommitted CHANGELOG change.

    Raises:
        GitError: git fails.
    """
    results = []
    for name in packages(repo):
        last_log = git(repo, "log", "-1", "--format=%H", "HEAD", "--", changelog_path(name)).strip()
        since = f"{last_log}..HEAD" if last_log else "HEAD"
        changed = commits_touching(repo, since, source_paths(name))
        src_dirty = working_tree and uncommitted(repo, source_paths(name))
        log_dirty = working_tree and uncommitted(repo, [changelog_path(name)])
        if log_dirty or (not changed and not src_dirty):
            detail = (
                "uncommitted CHANGELOG change"
                if log_dirty
                else f"CHANGELOG last changed in {last_log[:10]}, no source change since"
            )
            results.append(PackageResult(name, True, detail))
        else:
            when = f"last changed in {last_log[:10]}" if last_log else "has no commit"
            detail = (
                f"source has {describe(changed, src_dirty)} since {changelog_path(name)} {when}"
            )
            results.append(PackageResult(name, False, detail, changed))
    return results


def default_base(repo: Path) -> str | None:
    """`origin/main` when it exists and HEAD is not already on it, else None (latest mode)."""
    if not ref_exists(repo, "origin/main"):
        return None
    merge_base = git(repo, "merge-base", "origin/main", "HEAD").strip()
    head = git(repo, "rev-parse", "HEAD").strip()
    return None if merge_base == head else "origin/main"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 pass, 1 a package fails, 2 error)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repo", type=Path, default=ROOT, help="repository root (default: this one)"
    )
    parser.add_argument(
        "--base", help="range mode from merge-base(BASE, HEAD) (default: origin/main)"
    )
    parser.add_argument(
        "--latest", action="store_true", help="latest mode even where range mode would apply"
    )
    parser.add_argument(
        "--working-tree", action="store_true", help="also count uncommitted changes"
    )
    args = parser.parse_args(argv)
    if args.latest and args.base is not None:
        parser.error("--latest and --base exclude each other")
    repo: Path = args.repo
    try:
        base = args.base if args.base is not None or args.latest else default_base(repo)
        if base is not None and not ref_exists(repo, base):
            print(f"check_changelog: --base {base!r} is not a commit in {repo}", file=sys.stderr)
            return 2
        if base is not None:
            print(f"CHANGELOG check, range mode: commits since merge-base with {base}")
            results = check_range(repo, base, args.working_tree)
        else:
            print(
                "CHANGELOG check, latest mode: each package's source vs its CHANGELOG's last change"
            )
            results = check_latest(repo, args.working_tree)
    except GitError as exc:
        print(f"check_changelog: {exc}", file=sys.stderr)
        return 2
    width = max((len(r.name) for r in results), default=0)
    for r in results:
        print(f"  {'ok  ' if r.ok else 'FAIL'} {r.name:<{width}}  {r.detail}")
        if not r.ok:
            for commit in r.commits:
                print(f"         {commit}")
    failed = [r.name for r in results if not r.ok]
    if failed:
        print(
            f"\n{len(failed)} package(s) need a CHANGELOG entry: {', '.join(failed)}. Add a line "
            "under '## [Unreleased]' in each package's CHANGELOG.md (see CONTRIBUTING.md), or put "
            "a line 'Changelog: skip' in the message of a commit users cannot notice.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
