"""Recipes shipped with ssl-train (YAML files in this folder)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_recipes() -> dict[str, Path]:
    """Name (file stem) -> path of every shipped recipe."""
    folder = resources.files("ssl_train") / "recipes"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}
