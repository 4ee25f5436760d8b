"""The `ssl-serve` command: help texts, embed/models against a server, export, shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import (
    MODEL_NAME,
    NO_TORCH,
    CheckpointFixture,
    ServerProcess,
    png_bytes,
    start_server,
)

from ssl_serve.cli import main
from ssl_serve.client import EmbeddingClient


@pytest.mark.parametrize("command", ["serve", "embed", "models", "export"])
def test_each_subcommand_explains_itself(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ssl-serve {command}")
    assert "--target" in out or "--repository" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["serve", "--repository", "r", "--port", "99999"], "--port: must be a TCP port, 0-65535"),
        (["serve", "--repository", "r", "--port", "-1"], "--port: must be a TCP port"),
        (["serve", "--repository", "r", "--metrics-port", "65536"], "--metrics-port: must be"),
        (["serve", "--repository", "r", "--threads", "0"], "--threads: must be >= 1, got 0"),
        (["serve", "--repository", "r", "--max-text-chars", "0"], "--max-text-chars: must be"),
        (["serve", "--repository", "r", "--max-inputs-per-request", "0"],
         "--max-inputs-per-request: must be >= 1"),
        (["embed", "--target", "t", "--model", "m", "--output", "o", "--batch-size", "0"],
         "--batch-size: must be >= 1"),
        (["classify", "--target", "t", "--model", "m", "--top-k", "0"], "--top-k: must be >= 1"),
        (["models", "--target", "t", "--timeout-s", "0"], "--timeout-s: must be > 0"),
        (["export", "c", "--output", "o", "--name", "../x"],
         "--name: '../x' must start with a letter or digit and hold only letters, digits"),
        (["export", "c", "--output", "o", "--name", "m", "--version", ""],
         "--version: '' must start with a letter or digit"),
        (["export", "c", "--output", "o", "--name", "m", "--version", "1/2"],
         "--version: '1/2' must start"),
    ],
)  # fmt: skip
def test_out_of_range_options_are_usage_errors(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert words in capsys.readouterr().err


def test_export_refuses_a_bad_name_before_importing_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from ssl_serve.cli import main\n"
        "try:\n    main(['export', 'c', '--output', 'o', '--name', '.hidden'])\n"
        "except SystemExit as e:\n    print(e.code, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.stdout.split() == ["2", "False"], out.stderr
    assert "--name: '.hidden' must start with a letter or digit" in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_embed_writes_the_served_embeddings(
    server: ServerProcess, tmp_path: Path, fashion_test_images: np.ndarray
) -> None:
    files = []
    for i, img in enumerate(fashion_test_images[:5]):
        files.append(tmp_path / f"{i}.png")
        files[-1].write_bytes(png_bytes(img))
    out = tmp_path / "emb.npy"
    args = ["embed", "--target", server.address, "--model", MODEL_NAME, "--output", str(out)]
    assert main([*args, "--batch-size", "2", *map(str, files)]) == 0
    with EmbeddingClient(server.address) as client:
        expected = client.embed_images(MODEL_NAME, [f.read_bytes() for f in files])
    np.testing.assert_array_equal(np.load(out), expected)


def test_embed_prints_the_npy_path_and_names_the_bad_file(
    server: ServerProcess,
    tmp_path: Path,
    fashion_test_images: np.ndarray,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good, bad = tmp_path / "f0.png", tmp_path / "f1.png"
    good.write_bytes(png_bytes(fashion_test_images[0]))
    bad.write_bytes(b"not an image")
    args = ["embed", "--target", server.address, "--model", MODEL_NAME]
    # numpy.save appends .npy; the printed path is the file written.
    assert main([*args, "--output", str(tmp_path / "out"), str(good)]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'out.npy'}: (1, 128) float32\n"
    assert np.load(tmp_path / "out.npy").shape == (1, 128)
    # Batch size 1: the server sees the bad file as "input 0" of the second request.
    assert (
        main([*args, "--output", str(tmp_path / "e.npy"), "--batch-size", "1", str(good), str(bad)])
        == 1
    )
    err = capsys.readouterr().err
    assert f"INVALID_ARGUMENT: {bad} (input 1): cannot decode image (12 bytes)" in err
    assert "input 0" not in err
    assert not (tmp_path / "e.npy").exists()


def test_second_server_on_a_busy_port_fails_fast(server: ServerProcess, repository: Path) -> None:
    host, port = server.address.rsplit(":", 1)
    cmd = [sys.executable, "-c", NO_TORCH, "serve", "--repository", str(repository)]
    out = subprocess.run(
        [*cmd, "--host", host, "--port", port], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 1
    assert f"ssl-serve: error: cannot listen on {host}:{port} (address in use?" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    with EmbeddingClient(server.address) as client:  # the first server still answers
        assert [m.name for m in client.list_models()] == [MODEL_NAME]


def test_models_lists_the_repository(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "--target", server.address]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "MODALITY", "DIM", "READY", "PROVIDER"]
    assert lines[1].split() == [MODEL_NAME, "1", "image", "128", "True", "CPUExecutionProvider"]


def test_export_prints_validation_and_refuses_to_overwrite(
    checkpoint: CheckpointFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["export", str(checkpoint.run), "--repository", str(tmp_path), "--name", "m"]
    assert main([*args, "--version", "3"]) == 0
    out = capsys.readouterr().out
    assert f"to {tmp_path / 'm' / '3'}" in out and "max_abs_diff=" in out
    assert (tmp_path / "m" / "3" / "model.onnx").is_file()
    assert main([*args, "--version", "3"]) == 1
    err = capsys.readouterr().err
    assert "exists; pass overwrite=True (--overwrite) to replace it" in err
    assert "or export another version beside it (--version)" in err


def test_export_overwrite_refuses_a_folder_that_is_not_a_bundle(
    checkpoint: CheckpointFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    args = ["export", str(checkpoint.run), "--output", str(user), "--name", "m", "--overwrite"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{user} exists and is not a bundle folder (it is a folder without bundle.json)" in err
    assert [p.name for p in user.iterdir()] == ["notes.txt"]
    assert (user / "notes.txt").read_text() == "keep me"


def test_sigterm_drains_and_exits_cleanly(repository: Path, tmp_path: Path) -> None:
    srv = start_server(repository, tmp_path / "server.log")
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(timeout=30) == 0
    assert "received SIGTERM; draining" in srv.log.read_text()


def test_unknown_repository_is_a_clean_error(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "ssl_serve.cli", "serve", "--repository", str(tmp_path / "x")]
    out = subprocess.run([*cmd, "--port", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "model repository folder does not exist" in out.stderr
    assert "Traceback" not in out.stderr
