"""Build, check and install every package's release artefacts in clean venvs (issue 8, Releases).

For each package under `packages/` this script:

1. builds its sdist, then its wheel from that sdist (`uv build`, from the package's own folder), so
   a file missing from the sdist breaks the wheel here rather than for a user;
2. runs `twine check --strict` on both artefacts (the metadata PyPI renders);
3. checks that every requirement on another package of this repository (extras included) admits
   the version being built next to it, e.g. ssl-train's `ssl-data>=0.1,<0.2` admits ssl-data 0.1.0;
4. creates a clean venv, installs the wheel alone (ssl-serve with its `[cpu]` extra, which brings
   onnxruntime; dependencies from PyPI, torch pinned by
   `constraints.txt` to the local CPU wheel in `.wheels/`, our other packages only from the wheels
   built in step 1) and checks: `uv pip check`; the package imports from the venv with the built
   version; each console script's `--help` works; the modules the design keeps out are absent
   (ssl-serve without torch, ssl-data without ssl-models...); and the packages of this repository
   it pulls are byte-identical to the wheels built in step 1 (not a namesake from PyPI).

It prints one table and exits 1 when any check fails (0 otherwise, 2 for a usage error).

Usage (from the repository root, inside the workspace env, which provides uv and twine)::

    ./dev run release-check                          # every package
    ./dev run release-check --packages ssl-serve     # some of them
    ./dev run release-check --work-dir /tmp/rel      # keep the artefacts and venvs there
"""

from __future__ import annotations

import argparse
import csv
import email.parser
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"
LOCAL_WHEELS = ROOT / ".wheels"

# What each installed wheel must leave out of its venv (DESIGN.md: a serving box gets ssl-serve
# without torch; ssl-data knows no model; ssl-models knows no data loader and no trainer).
MUST_BE_ABSENT: dict[str, tuple[str, ...]] = {
    "ssl-data": ("ssl_models", "ssl_train", "ssl_serve"),
    "ssl-models": ("ssl_data", "ssl_train", "ssl_serve"),
    "ssl-train": ("ssl_serve",),
    "ssl-serve": ("torch", "ssl_models", "ssl_data", "ssl_train"),
}
# Modules a package must import in a venv that holds only its wheel and what that wheel pulls.
MUST_IMPORT: dict[str, tuple[str, ...]] = {
    "ssl-train": ("ssl_data", "ssl_models", "torch"),
    "ssl-serve": ("onnxruntime",),
}
# Extras installed with a wheel: ssl-serve's onnxruntime comes from `[cpu]` or `[gpu]` (never both).
INSTALL_EXTRAS: dict[str, str] = {"ssl-serve": "cpu"}


class ToolMissing(RuntimeError):
    """uv or twine cannot be found; the message says how to get it."""


@dataclass
class Row:
    """One line of the result table."""

    package: str
    check: str
    ok: bool
    detail: str = ""


@dataclass
class Artefacts:
    """The built files of one package and the metadata read from its wheel."""

    name: str
    version: Version
    sdist: Path
    wheel: Path
    requires: list[Requirement] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)


@dataclass
class Report:
    """All rows so far, with a helper that records a check's outcome."""

    rows: list[Row] = field(default_factory=list)

    def add(self, package: str, check: str, ok: bool, detail: str = "") -> bool:
        self.rows.append(Row(package, check, ok, detail))
        return ok

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]


def find_uv() -> list[str]:
    """The command that runs uv: hatch's (`HATCH_UV`), the env's `uv` package, or one on PATH.

    Raises:
        ToolMissing: no uv anywhere.
    """
    if os.environ.get("HATCH_UV"):
        return [os.environ["HATCH_UV"]]
    if importlib.util.find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    if found := shutil.which("uv"):
        return [found]
    raise ToolMissing(
        "uv not found: run this script in the workspace env (`./dev run release-check`)"
    )


def find_twine() -> list[str]:
    """The command that runs twine from this interpreter's env.

    Raises:
        ToolMissing: twine is not installed in this env.
    """
    if importlib.util.find_spec("twine") is None:
        raise ToolMissing("twine not installed: run this script in the workspace env (hatch.toml)")
    return [sys.executable, "-m", "twine"]


def clean_env() -> dict[str, str]:
    """This process's environment without the workspace env's venv, paths and uv settings."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_CONSTRAINT", "UV_FIND_LINKS"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return env


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in the clean environment, capturing stdout and stderr as text."""
    return subprocess.run(cmd, cwd=cwd, env=clean_env(), capture_output=True, text=True)


def tail(proc: subprocess.CompletedProcess[str], lines: int = 6) -> str:
    """The last `lines` lines of a process's stderr (or stdout), for a failure message."""
    text = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
    return " | ".join(text[-lines:])


def package_dirs(names: list[str] | None) -> list[Path]:
    """The package folders to check: all of `packages/*` with a pyproject, or those named.

    Raises:
        SystemExit: a requested name is not a package folder (status 2, naming the known ones).
    """
    known = {p.parent.name: p.parent for p in sorted((ROOT / "packages").glob("*/pyproject.toml"))}
    if not names:
        return list(known.values())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown package(s) {unknown}; known: {sorted(known)}")
    return [known[n] for n in names]


def wheel_metadata(wheel: Path) -> tuple[str, Version, list[Requirement], list[str]]:
    """Name, version, Requires-Dist and console-script names read from a built wheel."""
    with zipfile.ZipFile(wheel) as zf:
        dist_info = next(
            n.split("/")[0] for n in zf.namelist() if n.endswith(".dist-info/METADATA")
        )
        meta = email.parser.Parser().parsestr(zf.read(f"{dist_info}/METADATA").decode())
        scripts: list[str] = []
        if f"{dist_info}/entry_points.txt" in zf.namelist():
            section = ""
            for line in zf.read(f"{dist_info}/entry_points.txt").decode().splitlines():
                line = line.strip()
                if line.startswith("["):
                    section = line.strip("[]")
                elif section == "console_scripts" and "=" in line:
                    scripts.append(line.split("=")[0].strip())
    requires = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    return meta["Name"], Version(meta["Version"]), requires, scripts


def wheel_record(wheel: Path) -> dict[str, str]:
    """The wheel's RECORD as {path: sha256 hash}, for comparing an install with the wheel."""
    with zipfile.ZipFile(wheel) as zf:
        record = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
        rows = csv.reader(io.StringIO(zf.read(record).decode()))
        return {row[0]: row[1] for row in rows if row and row[1]}


def build(uv: list[str], pkg_dir: Path, dist: Path, report: Report) -> Artefacts | None:
    """Build the sdist and (from it) the wheel of the package in `pkg_dir` into `dist`."""
    name = pkg_dir.name  # the folder is named after the distribution (checked below)
    out = dist / name
    proc = run([*uv, "build", str(pkg_dir), "--out-dir", str(out)], cwd=pkg_dir)
    sdists, wheels = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    if proc.returncode != 0 or len(sdists) != 1 or len(wheels) != 1:
        report.add(name, "build sdist + wheel", False, tail(proc))
        return None
    meta_name, version, requires, scripts = wheel_metadata(wheels[0])
    report.add(name, "build sdist + wheel", True, f"{sdists[0].name}, {wheels[0].name}")
    if canonicalize_name(meta_name) != canonicalize_name(name):
        report.add(name, "wheel name", False, f"wheel says {meta_name!r}, folder {name!r}")
    return Artefacts(name, version, sdists[0], wheels[0], requires, scripts)


def twine_check(twine: list[str], art: Artefacts, report: Report) -> None:
    """`twine check --strict` on the sdist and the wheel."""
    proc = run([*twine, "check", "--strict", str(art.sdist), str(art.wheel)])
    ok = proc.returncode == 0
    report.add(art.name, "twine check --strict", ok, "sdist and wheel PASSED" if ok else tail(proc))


def check_internal_ranges(art: Artefacts, built: dict[str, Artefacts], report: Report) -> None:
    """Each requirement on another built package (extras included) must admit its built version."""
    for req in art.requires:
        other = built.get(canonicalize_name(req.name))
        if other is None:
            continue
        extra = f" (extra {req.marker})" if req.marker else ""
        ok = req.specifier.contains(other.version, prereleases=True)
        detail = (
            f"{req.name}{req.specifier}{extra} {'admits' if ok else 'excludes'} {other.version}"
        )
        report.add(art.name, f"range on {other.name}", ok, detail)


def venv_probe(python: Path, modules: list[str], cwd: Path) -> dict[str, object]:
    """Ask the venv's interpreter which of `modules` import, and from where, as a dict."""
    code = (
        "import importlib, json, sys\n"
        "out = {}\n"
        f"for m in {modules!r}:\n"
        "    try:\n"
        "        mod = importlib.import_module(m)\n"
        "        out[m] = {'file': getattr(mod, '__file__', None),"
        " 'version': getattr(mod, '__version__', None)}\n"
        "    except ImportError as exc:\n"
        "        out[m] = {'error': f'{type(exc).__name__}: {exc}'}\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [str(python), "-I", "-c", code], cwd=cwd, env=clean_env(), capture_output=True, text=True
    )
    if proc.returncode != 0:
        return {"__probe__": {"error": tail(proc)}}
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def installed_matches_wheel(python: Path, art: Artefacts) -> tuple[bool, str]:
    """Whether the files installed for `art` in the venv hash like the RECORD of its built wheel."""
    code = (
        "import importlib.metadata as md, json, sys\n"
        f"d = md.distribution({art.name!r})\n"
        "print(json.dumps({str(f): f.hash.value for f in d.files or [] if f.hash}))\n"
    )
    proc = subprocess.run(
        [str(python), "-I", "-c", code], env=clean_env(), capture_output=True, text=True
    )
    if proc.returncode != 0:
        return False, f"{art.name} not installed: {tail(proc, 1)}"
    installed: dict[str, str] = json.loads(proc.stdout)
    expected = {
        path: digest.removeprefix("sha256=") for path, digest in wheel_record(art.wheel).items()
    }
    differing = sorted(p for p, h in expected.items() if installed.get(p) != h)
    if differing:
        return False, f"{len(differing)} file(s) differ from {art.wheel.name}, e.g. {differing[0]}"
    return True, f"{art.name} {art.version} installed from {art.wheel.name}"


def install_and_probe(
    uv: list[str], art: Artefacts, built: dict[str, Artefacts], work: Path, report: Report
) -> None:
    """Install `art`'s wheel alone in a clean venv and run the installed-package checks."""
    venv = work / "venvs" / art.name
    python = venv / "bin" / "python"
    started = time.perf_counter()
    proc = run([*uv, "venv", "--quiet", "--python", sys.executable, str(venv)])
    if proc.returncode != 0:
        report.add(art.name, "clean venv", False, tail(proc))
        return
    install = [*uv, "pip", "install", "--python", str(python), "--constraint", str(CONSTRAINTS)]
    if LOCAL_WHEELS.is_dir():
        install += ["--find-links", str(LOCAL_WHEELS)]
    for other in built.values():
        install += ["--find-links", str(other.wheel.parent)]
    extra = INSTALL_EXTRAS.get(art.name)
    proc = run(
        [*install, f"{art.name}[{extra}] @ {art.wheel.as_uri()}" if extra else str(art.wheel)]
    )
    seconds = time.perf_counter() - started
    detail = tail(proc) if proc.returncode else f"{seconds:.1f} s with its dependencies"
    if not report.add(art.name, "install wheel alone", proc.returncode == 0, detail):
        return
    proc = run([*uv, "pip", "check", "--python", str(python)])
    report.add(art.name, "uv pip check", proc.returncode == 0, tail(proc, 2))

    import_name = art.name.replace("-", "_")
    absent = list(MUST_BE_ABSENT.get(art.name, ()))
    present = [import_name, *MUST_IMPORT.get(art.name, ())]
    probe = venv_probe(python, [*present, *absent], cwd=work)
    if "__probe__" in probe:
        report.add(art.name, "probe venv", False, str(probe["__probe__"]))
        return
    for module in present:
        info = probe[module]
        assert isinstance(info, dict)
        if "error" in info:
            report.add(art.name, f"import {module}", False, str(info["error"]))
            continue
        inside = str(info["file"]).startswith(str(venv))
        where = "from the venv" if inside else f"from {info['file']}, outside the venv"
        ok = inside and (module != import_name or info["version"] == str(art.version))
        report.add(art.name, f"import {module}", ok, f"__version__ {info['version']}, {where}")
    for module in absent:
        info = probe[module]
        assert isinstance(info, dict)
        ok = "error" in info
        report.add(
            art.name,
            f"{module} absent",
            ok,
            "not importable" if ok else f"imports from {info['file']}",
        )

    for script in art.scripts:
        proc = run([str(venv / "bin" / script), "--help"], cwd=work)
        ok = proc.returncode == 0 and proc.stdout.lstrip().startswith("usage:")
        first = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
        report.add(art.name, f"{script} --help", ok, first if ok else tail(proc))

    for req in art.requires:
        pulled = built.get(canonicalize_name(req.name))
        if pulled is not None and not req.marker:
            ok, detail = installed_matches_wheel(python, pulled)
            report.add(art.name, f"pulls {pulled.name}", ok, detail)


def print_table(report: Report) -> None:
    """The result table: package, check, ok/FAIL, detail (cut to keep one line per row)."""
    widths = [max(len(getattr(r, col)) for r in report.rows) for col in ("package", "check")]
    for r in report.rows:
        detail = r.detail[:107] + "..." if r.ok and len(r.detail) > 110 else r.detail
        print(
            f"{r.package:<{widths[0]}}  {r.check:<{widths[1]}}  {'ok  ' if r.ok else 'FAIL'}  {detail}"
        )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 all pass, 1 a check fails, 2 error)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--packages", nargs="+", metavar="NAME", help="package folders (default: all)"
    )
    parser.add_argument(
        "--work-dir", type=Path, help="keep artefacts and venvs here (default: a temp dir, removed)"
    )
    args = parser.parse_args(argv)
    try:
        uv, twine = find_uv(), find_twine()
    except ToolMissing as exc:
        print(f"check_release: {exc}", file=sys.stderr)
        return 2
    dirs = package_dirs(args.packages)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="ssl-release-"))
    if args.work_dir is not None and work.exists() and any(work.iterdir()):
        print(
            f"check_release: --work-dir {work} is not empty; give an empty or new folder",
            file=sys.stderr,
        )
        return 2
    work.mkdir(parents=True, exist_ok=True)
    report = Report()
    started = time.perf_counter()
    try:
        # Every package is built, since ssl-train's venv takes ssl-data and ssl-models from the
        # built wheels; only the selected ones are reported and installed.
        built: dict[str, Artefacts] = {}
        selected: list[Artefacts] = []
        for pkg_dir in package_dirs(None):
            art = build(uv, pkg_dir, work / "dist", report if pkg_dir in dirs else Report())
            if art is not None:
                built[canonicalize_name(art.name)] = art
                if pkg_dir in dirs:
                    selected.append(art)
        for art in selected:
            twine_check(twine, art, report)
            check_internal_ranges(art, built, report)
        for art in selected:
            install_and_probe(uv, art, built, work, report)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print_table(report)
    elapsed = time.perf_counter() - started
    failed = report.failed
    print(f"\n{len(report.rows) - len(failed)} passed, {len(failed)} failed in {elapsed:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
