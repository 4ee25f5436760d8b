"""Every command the README and the docs show is a command the CLIs accept today.

Each ```bash block of README.md and docs/**/*.md is split into commands (backslash continuations
joined, trailing ``# comments`` and shell redirections dropped). Commands of ``ssl-train``,
``ssl-serve`` and ``ssl-data`` (also behind ``./dev run`` or ``torchrun ... -m ssl_train.cli``)
are parsed by that CLI's own argparse parser, so a renamed or removed flag, a missing required
option or a wrong choice fails here. ``ssl-train pretrain`` on a shipped recipe also validates its
``--set`` overrides against the recipe schema. Usage synopses (with ``[...]``, ``(a | b)``,
``a|b``, ``...`` or upper-case placeholders such as ``DIR``) are skipped: they describe commands rather than being ones.

The image guide's commands are also run for real, as written (test_image_guide_runs_as_written).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PROGRAMS = ("ssl-train", "ssl-serve", "ssl-data")
_SYNOPSIS = re.compile(r"[\[\]()]|\.\.\.|\w\|\w|<\w")
_PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*([.:][A-Za-z]+)?$")  # N, DIR, HOST:PORT, OUT.npy


def _bash_blocks(text: str) -> Iterator[str]:
    for m in re.finditer(r"^```(?:bash|sh|console)\n(.*?)^```", text, flags=re.S | re.M):
        yield m.group(1)


def _commands(block: str) -> Iterator[str]:
    joined = re.sub(r"\\\n\s*", " ", block)
    for line in joined.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if line and not line.startswith("#"):
            yield line


def _argv(command: str) -> tuple[str, list[str]] | None:
    """(program, arguments) of a documented command of ours, or None for anything else."""
    if _SYNOPSIS.search(command):
        return None
    words = shlex.split(command.replace("&", " "), comments=False)
    for stop in (">", ">>", "|", "2>"):
        if stop in words:
            words = words[: words.index(stop)]
    if words[:2] == ["./dev", "run"]:
        words = words[2:]
    if words and words[0] == "torchrun" and "-m" in words:
        i = words.index("-m")
        words = ["ssl-train", *words[i + 2 :]] if words[i + 1] == "ssl_train.cli" else []
    if not words or words[0] not in PROGRAMS or any(_PLACEHOLDER.match(w) for w in words):
        return None
    return words[0], words[1:]


def documented_commands() -> list[tuple[str, str, list[str]]]:
    found = []
    for doc in DOCS:
        for block in _bash_blocks(doc.read_text(encoding="utf-8")):
            for command in _commands(block):
                parsed = _argv(command)
                if parsed is not None:
                    found.append((f"{doc.relative_to(ROOT)}: {command}", *parsed))
    return found


COMMANDS = documented_commands()


def _parser(program: str):
    if program == "ssl-train":
        from ssl_train.cli import build_parser
    elif program == "ssl-serve":
        from ssl_serve.cli import build_parser
    else:
        from ssl_data.cli import build_parser
    return build_parser()


def test_the_docs_show_commands_of_every_cli() -> None:
    programs = {program for _, program, _ in COMMANDS}
    assert programs == set(PROGRAMS), programs
    assert len(COMMANDS) >= 40, len(COMMANDS)


@pytest.mark.parametrize(("where", "program", "argv"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_documented_command_parses(where: str, program: str, argv: list[str]) -> None:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args = _parser(program).parse_args(argv)
    except SystemExit as e:
        if e.code not in (0, None):  # --help / --version exit 0
            pytest.fail(f"{where}\n{err.getvalue()}")
        return
    if program == "ssl-train" and argv[0] == "pretrain":
        from ssl_train.recipe import load_recipe
        from ssl_train.recipes import shipped_recipes

        shipped = shipped_recipes()
        if args.recipe in shipped:
            load_recipe(shipped[args.recipe], args.set)  # --set keys and values are valid


def test_synopsis_filter_keeps_real_commands() -> None:
    """The filter that skips usage lines must not skip ordinary commands (a test of the test)."""
    assert _argv("ssl-train pretrain RECIPE [--set key=value ...]") is None
    assert _argv("ssl-train finetune RUN --mode linear|full") is None
    assert _argv("ssl-data shards write SRC OUTDIR --max-count N") is None
    assert _argv('ssl-serve export --hf-model "$MINILM" --repository models --name m') == (
        "ssl-serve",
        ["export", "--hf-model", "$MINILM", "--repository", "models", "--name", "m"],
    )
    assert _argv("./dev run ssl-train recipes fashion_mnist_simclr > my.yaml") == (
        "ssl-train",
        ["recipes", "fashion_mnist_simclr"],
    )
    assert _argv("torchrun --standalone -m ssl_train.cli pretrain x.yaml") == (
        "ssl-train",
        ["pretrain", "x.yaml"],
    )


# ------------------------------------------------------------ the image guide, run as written
GUIDE = ROOT / "docs" / "guides" / "images.md"


def _section(text: str, heading: str) -> str:
    m = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert m, f"{GUIDE.name} has no section {heading!r}"
    return m.group(1)


def _first_command(text: str, heading: str, program: str) -> str:
    for block in _bash_blocks(_section(text, heading)):
        for command in _commands(block):
            if command.startswith(program):
                return command
    raise AssertionError(f"no {program} command in {GUIDE.name} section {heading!r}")


def _shell(command: str, cwd: Path) -> str:
    import subprocess

    proc = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_image_guide_runs_as_written(tmp_path: Path) -> None:
    """Folder of real images -> the guide's pretrain, evaluate, export, serve, embed and Python
    snippet, each taken from docs/guides/images.md itself. Only the budget is shortened
    (appended ``--set`` overrides) and the port is 0 (a free one)."""
    import subprocess

    import numpy as np
    from PIL import Image

    from ssl_data import load_fashion_mnist
    from ssl_data.datasets import bundled_sample_root

    images, labels = load_fashion_mnist("train", root=bundled_sample_root())
    names = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]  # fmt: skip
    (tmp_path / "my_images").mkdir()
    for i in range(160):  # unlabelled, RGB JPEG as a camera would give
        Image.fromarray(images[i]).convert("RGB").save(tmp_path / "my_images" / f"{i:05d}.jpg")
    for i in range(160, 260):  # labelled by sub-folder, PNG
        folder = tmp_path / "my_labelled" / names[int(labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(folder / f"{i:05d}.png")

    guide = GUIDE.read_text(encoding="utf-8")
    fast = " --set budget.epochs=null --set budget.steps=2 --set budget.batch_size=32 --set threads=2 --set logging.progress_bar=false"  # fmt: skip
    _shell(_first_command(guide, "2. A recipe", "ssl-train recipes image_folder_simclr"), tmp_path)
    assert "data:" in (tmp_path / "my.yaml").read_text()
    _shell(_first_command(guide, "3. Pretrain", "ssl-train pretrain") + fast, tmp_path)
    evaluate = _first_command(guide, "4. Evaluate", "ssl-train evaluate")
    result = json.loads(_shell(evaluate, tmp_path))
    assert 0.1 < result["knn_top1_k20"] <= 1.0 and result["queries"] == 20
    _shell(_first_command(guide, "6. Export a bundle", "ssl-serve export"), tmp_path)
    assert (tmp_path / "models" / "mine" / "1" / "model.onnx").is_file()

    serve = _first_command(guide, "7. Serve", "ssl-serve serve").replace("--port 50051", "--port 0")
    proc = subprocess.Popen([*shlex.split(serve), "--threads", "1"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "listening on" in line, proc.stderr.read() if proc.stderr else line
        target = line.strip().rsplit(" ", 1)[-1]
        section = _section(guide, "8. Call it")
        listing = _first_command(guide, "8. Call it", "ssl-serve models")
        assert "mine" in _shell(listing.replace("127.0.0.1:50051", target), tmp_path)
        embed = _first_command(guide, "8. Call it", "ssl-serve embed")
        _shell(embed.replace("127.0.0.1:50051", target), tmp_path)
        emb = np.load(tmp_path / "emb.npy")
        assert emb.shape[0] == 1 + len(list((tmp_path / "my_labelled" / "Bag").glob("*.png")))
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
        snippet = re.search(r"```python\n(.*?)```", section, flags=re.S)
        assert snippet, "section 8 has no Python snippet"
        code = snippet.group(1).replace("127.0.0.1:50051", target)
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip() == f"(160, {emb.shape[1]})"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
