"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import subprocess


def cli(*args: str) -> str:
    """Run a console script; fail the test with its stderr when it exits non-zero."""
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}"
    return proc.stdout
