"""The committed reference pages (docs/reference/{cli,recipe,grpc}.md) match their sources.

scripts/gen_docs.py writes them from the CLI parsers, the recipe schema and the proto comments;
when a flag, a recipe key or a proto comment changes, this test fails until the pages are
regenerated (``./dev run docs:gen``) and committed.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_docs"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_committed_reference_pages_match_the_sources():
    gen = _gen_docs()
    assert set(gen.PAGES) == {"reference/cli.md", "reference/recipe.md", "reference/grpc.md"}
    assert gen.stale_pages(ROOT / "docs") == [], "run ./dev run docs:gen and commit the pages"


def test_check_names_a_stale_or_missing_page(tmp_path, capsys):
    gen = _gen_docs()
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs" / "reference", docs / "reference")
    assert gen._main(["--check", "--output", str(docs)]) == 0
    page = docs / "reference" / "recipe.md"
    page.write_text(page.read_text(encoding="utf-8").replace("`budget.steps`", "`budget.stp`"))
    (docs / "reference" / "grpc.md").unlink()
    assert gen.stale_pages(docs) == ["reference/recipe.md", "reference/grpc.md"]
    assert gen._main(["--check", "--output", str(docs)]) == 1
    err = capsys.readouterr().err
    assert "reference/recipe.md, reference/grpc.md" in err and "docs:gen" in err
    assert gen._main(["--output", str(docs)]) == 0  # regenerates both
    assert gen.stale_pages(docs) == []
