"""Every command the README and the docs show is a command the CLIs accept today.

Each ```bash block of README.md and docs/**/*.md is split into commands (backslash continuations
joined, trailing ``# comments`` and shell redirections dropped). Commands of ``ssl-train``,
``ssl-serve`` and ``ssl-data`` (also behind ``./dev run`` or ``torchrun ... -m ssl_train.cli``)
are parsed by that CLI's own argparse parser, so a renamed or removed flag, a missing required
option or a wrong choice fails here. ``ssl-train pretrain`` on a shipped recipe also validates its
``--set`` overrides against the recipe schema. Usage synopses (with ``[...]``, ``(a | b)``,
``a|b``, ``...`` or upper-case placeholders such as ``DIR``) are skipped: they describe commands rather than being ones.

The guides' commands are also run for real, as written: test_image_guide_runs_as_written,
test_text_guide_runs_as_written (the quick path on the bundled WordNet sample),
test_text_guide_own_data_runs_as_written (section 2b: pretrain, fine-tune, export, serve, embed,
classify on your own files) and test_speech_guide_runs_as_written (pretrain, evaluate, export,
serve, embed). Each command is taken from its guide by section heading (``_first_command``);
only the budget is shortened (appended ``--set`` overrides) and servers listen on a free port
(``--port 0``), so a guide command that no longer works as written fails here.
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


# ------------------------------------------------------------ the guides, run as written
GUIDES = ROOT / "docs" / "guides"


def _section(text: str, heading: str) -> str:
    m = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert m, f"{text.splitlines()[0]!r} has no section {heading!r}"
    return m.group(1)


def _first_command(text: str, heading: str, start: str, contains: str = "") -> str:
    """The first command of the section that starts with ``start`` and contains ``contains``."""
    for block in _bash_blocks(_section(text, heading)):
        for command in _commands(block):
            if command.startswith(start) and contains in command:
                return command
    raise AssertionError(f"no {start!r} command ({contains!r}) in section {heading!r}")


def _block(text: str, heading: str, language: str) -> str:
    """The first ```language block of the section."""
    m = re.search(rf"^```{language}\n(.*?)^```", _section(text, heading), flags=re.S | re.M)
    assert m, f"section {heading!r} has no {language} block"
    return m.group(1)


def _shell(command: str, cwd: Path) -> str:
    import subprocess

    proc = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _python(code: str, cwd: Path) -> str:
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@contextlib.contextmanager
def _serving(command: str, cwd: Path) -> Iterator[str]:
    """Run the guide's ``ssl-serve serve`` command on a free port (one thread); yield its
    HOST:PORT."""
    import subprocess

    command = re.sub(r"--port \d+", "--port 0", command.removesuffix("&").strip())
    proc = subprocess.Popen([*shlex.split(command), "--threads", "1"], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "listening on" in line, proc.stderr.read() if proc.stderr else line
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_image_guide_runs_as_written(tmp_path: Path) -> None:
    """Folder of real images -> the guide's pretrain, evaluate, export, serve, embed and Python
    snippet, each taken from docs/guides/images.md itself. Only the budget is shortened
    (appended ``--set`` overrides) and the port is 0 (a free one)."""
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

    guide = (GUIDES / "images.md").read_text(encoding="utf-8")
    fast = " --set budget.epochs=null --set budget.steps=2 --set budget.batch_size=32 --set threads=2 --set logging.progress_bar=false"  # fmt: skip
    _shell(_first_command(guide, "2. A recipe", "ssl-train recipes image_folder_simclr"), tmp_path)
    assert "data:" in (tmp_path / "my.yaml").read_text()
    _shell(_first_command(guide, "3. Pretrain", "ssl-train pretrain") + fast, tmp_path)
    evaluate = _first_command(guide, "4. Evaluate", "ssl-train evaluate")
    result = json.loads(_shell(evaluate, tmp_path))
    assert 0.1 < result["knn_top1_k20"] <= 1.0 and result["queries"] == 20
    _shell(_first_command(guide, "6. Export a bundle", "ssl-serve export"), tmp_path)
    assert (tmp_path / "models" / "mine" / "1" / "model.onnx").is_file()

    serve = _first_command(guide, "7. Serve", "ssl-serve serve")
    with _serving(serve, tmp_path) as target:
        listing = _first_command(guide, "8. Call it", "ssl-serve models")
        assert "mine" in _shell(listing.replace("127.0.0.1:50051", target), tmp_path)
        embed = _first_command(guide, "8. Call it", "ssl-serve embed")
        _shell(embed.replace("127.0.0.1:50051", target), tmp_path)
        emb = np.load(tmp_path / "emb.npy")
        assert emb.shape[0] == 1 + len(list((tmp_path / "my_labelled" / "Bag").glob("*.png")))
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
        code = _block(guide, "8. Call it", "python").replace("127.0.0.1:50051", target)
        assert _python(code, tmp_path).strip() == f"(160, {emb.shape[1]})"


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


TEXT_QUICK = "2. Pretrain: MLM or SimCSE with `ssl-train`"
TEXT_OWN = "2b. Your own texts, end to end: pretrain, fine-tune, export, serve"
TEXT_FAST = " --set budget.steps=2 --set schedule.warmup_steps=1 --set logging.progress_bar=false"


def test_text_guide_runs_as_written(tmp_path: Path) -> None:
    """docs/guides/text.md section 2 as written: the measured quick path on ssl-data's bundled
    WordNet sample (``WN=...``, pretrain, evaluate, export of the run's hf/ folder). Only the
    budget is shortened (appended ``--set``)."""
    guide = (GUIDES / "text.md").read_text(encoding="utf-8")
    wn = _first_command(guide, TEXT_QUICK, "WN=")
    pretrain = _first_command(guide, TEXT_QUICK, "ssl-train pretrain wordnet_mlm", "data.root=$WN")
    run = _last_json(_shell(f"{wn}\n{pretrain}{TEXT_FAST}", tmp_path))
    assert run["steps"] == 2 and run["hf_model"] == "runs/wordnet-mlm/hf", run
    assert 0.0 <= run["evaluation"]["knn_top1"] <= 1.0
    evaluate = _first_command(guide, TEXT_QUICK, "ssl-train evaluate", "--threads 1")
    result = json.loads(_shell(evaluate, tmp_path))
    assert (result["memory_bank"], result["queries"]) == (3140, 784), result
    assert result["knn_top1_k20"] == run["evaluation"]["knn_top1"]  # the guide: they agree
    assert "knn_top5_k200" in result
    out = _shell(_first_command(guide, TEXT_QUICK, "ssl-serve export --hf-model runs/"), tmp_path)
    assert "exported wordnet-mlm/1 to models/wordnet-mlm/1\n" in out, out
    assert "text model: dim 128, pooling mean, max_length 64 tokens, inputs ['input_ids'" in out
    assert re.search(r"max_abs_diff=\S+ min_cosine=\S+ .*tokenizer_mismatches=0", out), out


def test_text_guide_own_data_runs_as_written(tmp_path: Path) -> None:
    """docs/guides/text.md section 2b as written: the guide's Python snippet writes your files
    from real WordNet glosses, its YAML is the recipe; pretrain, full fine-tuning on the labelled
    TSV, export of both bundles, serve, ``ssl-serve embed --text`` and ``ssl-serve classify
    --text``. Only the budgets are shortened (appended ``--set``) and the port is 0. (The linear
    fine-tuning command differs only by its mode; it is parsed, not run, to keep this short.)"""
    import numpy as np

    guide = (GUIDES / "text.md").read_text(encoding="utf-8")
    _python(_block(guide, TEXT_OWN, "python"), tmp_path)
    labels = {line.split("\t", 1)[0] for line in (tmp_path / "my_labels.tsv").open()}
    assert labels == {"noun", "verb", "adj", "adv"}, labels
    assert len((tmp_path / "my_texts.txt").read_text().splitlines()) == 3924
    (tmp_path / "my_mlm.yaml").write_text(_block(guide, TEXT_OWN, "yaml"))
    pretrain = _first_command(guide, TEXT_OWN, "ssl-train pretrain my_mlm.yaml")
    run = _last_json(_shell(pretrain + TEXT_FAST, tmp_path))
    assert run["steps"] == 2 and run["evaluation"] is None, run
    full = _first_command(guide, TEXT_OWN, "ssl-train finetune runs/my-mlm --mode full")
    short = " --set budget.epochs=1 --set data.limit=192 --set progress_bar=false"
    result = _last_json(_shell(full + short, tmp_path))
    assert result["run"] == "runs/my-mlm/finetune-full" and 0.0 <= result["test_top1"] <= 1.0
    out = _shell(_first_command(guide, TEXT_OWN, "ssl-serve export", "--name my-mlm"), tmp_path)
    assert re.search(r"text checkpoint step-00000002 \(step 2, method masked_lm\): dim 128", out)
    out = _shell(_first_command(guide, TEXT_OWN, "ssl-serve export", "--name my-pos"), tmp_path)
    assert re.search(r"classifier: 4 labels; probabilities vs PyTorch: max_abs_diff=", out), out

    with _serving(_first_command(guide, TEXT_OWN, "ssl-serve serve"), tmp_path) as target:
        embed = _first_command(guide, TEXT_OWN, "ssl-serve embed")
        out = _shell(embed.replace("127.0.0.1:50071", target), tmp_path)
        line = r"wrote emb\.npy: \(2, 128\) float32 \(\d+ tokens, 0 texts truncated\)\n"
        assert re.fullmatch(line, out), out
        emb = np.load(tmp_path / "emb.npy")
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
        classify = _first_command(guide, TEXT_OWN, "ssl-serve classify")
        lines = _shell(classify.replace("127.0.0.1:50071", target), tmp_path).splitlines()
        texts = re.findall(r'--text "([^"]+)"', classify)
        label = r"(noun|verb|adj|adv) (0\.\d{4}|1\.0000)"  # top-2: label probability
        assert len(lines) == len(texts) == 2, lines
        for text, line in zip(texts, lines):
            assert re.fullmatch(rf"{re.escape(text)}: {label}, {label}", line), line


def test_speech_guide_runs_as_written(tmp_path: Path) -> None:
    """docs/guides/speech.md as written: the measured HuBERT pretraining on spoken digits
    (section 5, budget shortened), its evaluate, then section 6: export the run, serve it and
    embed the two espeak-ng clips the guide names, from the SpokenDigits render cache."""
    import numpy as np

    guide = (GUIDES / "speech.md").read_text(encoding="utf-8")
    train, serve = "5. Pretraining with `ssl-train`", "6. Export, serve, embed a speech run"
    pretrain = _first_command(guide, train, "ssl-train pretrain spoken_digits_hubert", "runs/hubert-200")  # fmt: skip
    run = _last_json(_shell(pretrain + " --set budget.steps=2", tmp_path))
    assert run["steps"] == 2 and 0.0 <= run["evaluation"]["knn_top1"] <= 1.0, run
    evaluate = _first_command(guide, train, "ssl-train evaluate", "runs/hubert-200")
    result = json.loads(_shell(evaluate, tmp_path))
    assert (result["memory_bank"], result["queries"]) == (70, 30), result
    assert result["knn_top1_k5"] == run["evaluation"]["knn_top1"]  # the guide: equals online
    out = _shell(_first_command(guide, serve, "ssl-serve export runs/hubert-200"), tmp_path)
    assert "exported speech/1 to models/speech/1" in out, out
    assert "audio model: dim 128, 16000 Hz, max 30 s, pooling mean over real frames" in out, out
    assert re.search(r"validation on \d+ real recordings .*max_abs_diff=\S+ min_cosine=", out.replace("\n", " ")), out  # fmt: skip

    with _serving(_first_command(guide, serve, "ssl-serve serve"), tmp_path) as target:
        clips = _first_command(guide, serve, "CLIPS=")
        embed = _first_command(guide, serve, "ssl-serve embed").replace("127.0.0.1:50051", target)
        out = _shell(f"{clips}\n{embed}", tmp_path)
        assert out == "wrote speech.npy: (2, 128) float32\n", out
        emb = np.load(tmp_path / "speech.npy")
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
