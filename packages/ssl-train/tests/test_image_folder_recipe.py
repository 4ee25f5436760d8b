"""Pretraining on a folder of image files (``data.dataset: image_folder``), on real Fashion-MNIST
images written as PNG (lossless: exact round trip) and as RGB JPEG (the 3-channel path)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_data import CorruptFileError, load_fashion_mnist
from ssl_data.datasets import bundled_sample_root
from ssl_train import RecipeError, load_recipe
from ssl_train.cli import main
from ssl_train.data import (
    fit_to_size,
    labelled_eval_images,
    load_image_folder,
    load_images,
    split_bank_queries,
)
from ssl_train.recipes import shipped_recipes

N_TRAIN, N_EVAL = 320, 500
# The first 500 test images hold 55 52 65 46 57 39 47 47 44 48 of classes 0..9; 20% of each,
# rounded, are queries: 11+10+13+9+11+8+9+9+9+10.
N_QUERIES = 99
GRAY = ["data.channels=1", "data.mean=[0.2860]", "data.std=[0.3530]"]
# A few fast steps of the shipped template (its model and views; a narrower encoder).
FAST = [
    "data.image_size=28", "budget.epochs=null", "budget.steps=6", "budget.batch_size=64",
    "encoder.widths=[16,32]", "threads=2", "logging.progress_bar=false", "logging.plots=false",
    "logging.tensorboard=false", "checkpoint.every_steps=100",
]  # fmt: skip


def _write(folder: Path, images: np.ndarray, labels: np.ndarray, fmt: str) -> list[Path]:
    """One file per image in ``folder/<class>/<index>.<fmt>``; returns the paths in index order."""
    paths = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = folder / f"class_{label}" / f"{i:05d}.{fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "png":
            Image.fromarray(image).save(path)
        else:
            Image.fromarray(image).convert("RGB").save(path, quality=95)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Real Fashion-MNIST images (bundled sample) as PNG and JPEG folders with class sub-folders."""
    root = tmp_path_factory.mktemp("image_folders")
    train_x, train_y = load_fashion_mnist("train", root=bundled_sample_root())
    test_x, test_y = load_fashion_mnist("test", root=bundled_sample_root())
    out = {"train_x": train_x[:N_TRAIN], "train_y": train_y[:N_TRAIN],
           "eval_x": test_x[:N_EVAL], "eval_y": test_y[:N_EVAL]}  # fmt: skip
    for fmt in ("png", "jpg"):
        out[f"train_{fmt}"] = root / f"train_{fmt}"
        out[f"train_{fmt}_paths"] = _write(
            root / f"train_{fmt}", out["train_x"], out["train_y"], fmt
        )
        out[f"eval_{fmt}"] = root / f"eval_{fmt}"
        _write(root / f"eval_{fmt}", out["eval_x"], out["eval_y"], fmt)
    return out


def _recipe(*overrides: str):
    return load_recipe(shipped_recipes()["image_folder_simclr"], list(overrides))


def _by_path_order(paths: list[Path], root: Path) -> np.ndarray:
    """Image indices in the order the folder lists them (relative path, as ImageFolder does)."""
    order = sorted(range(len(paths)), key=lambda i: paths[i].relative_to(root).as_posix())
    return np.asarray(order)


def test_png_folder_round_trips_exactly(folders):
    recipe = _recipe(f"data.path={folders['train_png']}", *GRAY, *FAST)
    images, labels = load_images(recipe)
    order = _by_path_order(folders["train_png_paths"], folders["train_png"])
    assert images.dtype == torch.uint8 and images.shape == (N_TRAIN, 28, 28)
    assert torch.equal(images, torch.from_numpy(folders["train_x"][order]))
    assert (labels == -1).all()  # pretraining ignores the class sub-folders

    labelled = load_image_folder(folders["eval_png"], recipe, labelled=True, key="data.eval_path")
    assert labelled.classes == tuple(f"class_{c}" for c in range(10))
    idx = np.asarray([int(p.stem) for p in labelled.paths])
    assert np.array_equal(labelled.labels, folders["eval_y"][idx])
    assert torch.equal(labelled.images, torch.from_numpy(folders["eval_x"][idx]))


def test_rgb_jpeg_folder_is_three_channels(folders):
    recipe = _recipe(f"data.path={folders['train_jpg']}", *FAST)
    assert recipe.encoder["in_channels"] == 3  # from data.channels
    images, _ = load_images(recipe)
    assert images.shape == (N_TRAIN, 3, 28, 28) and images.dtype == torch.uint8
    paths = sorted(
        folders["train_jpg_paths"], key=lambda p: p.relative_to(folders["train_jpg"]).as_posix()
    )
    first = np.array(Image.open(paths[0]).convert("RGB")).transpose(2, 0, 1)
    assert torch.equal(images[0], torch.from_numpy(first))  # Pillow's own decode of the file
    order = _by_path_order(folders["train_jpg_paths"], folders["train_jpg"])
    gray = torch.from_numpy(folders["train_x"][order]).float()
    assert (images.float().mean(dim=1) - gray).abs().mean() < 4  # JPEG q95 of the same images


def test_fit_to_size_crops_centre_and_resizes_like_pillow(folders):
    a, b = (torch.from_numpy(x)[None] for x in folders["train_x"][:2])
    wide = torch.cat([a, b], dim=2)  # (1, 28, 56)
    assert torch.equal(fit_to_size(wide, 28), wide[:, :, 14:42])  # centre crop, no resize
    assert torch.equal(fit_to_size(a, 28), a)
    tall = torch.cat([a, b], dim=1)  # (1, 56, 28) -> 14 x 28 -> crop 14 x 14 at rows 0..14
    reference = Image.fromarray(tall[0].numpy()).resize((14, 28), Image.Resampling.BILINEAR)
    expected = torch.from_numpy(np.array(reference))[7:21][None]
    got = fit_to_size(tall, 14)
    assert got.shape == (1, 14, 14) and got.dtype == torch.uint8
    assert (got.int() - expected.int()).abs().max() <= 1


def test_bank_query_split_is_per_class_and_fixed():
    labels = np.repeat(np.arange(4), [10, 5, 2, 1])
    bank, queries = split_bank_queries(labels, 0.2)
    assert sorted(np.concatenate([bank, queries]).tolist()) == list(range(18))
    assert np.bincount(labels[queries], minlength=4).tolist() == [2, 1, 1, 0]
    again = split_bank_queries(labels, 0.2)
    assert np.array_equal(bank, again[0]) and np.array_equal(queries, again[1])


def test_pretrain_and_evaluate_png_folder(folders, tmp_path, capsys, caplog):
    run = tmp_path / "run"
    args = ["pretrain", "image_folder_simclr", "--output", str(run),
            "--set", f"data.path={folders['train_png']}",
            "--set", f"data.eval_path={folders['eval_png']}"]  # fmt: skip
    for o in [*GRAY, *FAST]:
        args += ["--set", o]
    with caplog.at_level(logging.INFO, logger="ssl_train"):
        assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["steps"] == 6 and np.isfinite(out["final_loss"])
    assert any(f"{N_TRAIN} images" in r.getMessage() for r in caplog.records)

    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(run),
                "--k",
                "20",
                "--output",
                str(tmp_path / "e.json"),
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["memory_bank"] == N_EVAL - N_QUERIES and res["queries"] == N_QUERIES
    # 10 classes: chance is 0.1. Measured 0.55 after these 6 steps (random weights: 0.47, raw
    # pixels: 0.64); a wrong label or image order would give about chance.
    assert res["knn_top1_k20"] > 0.3
    # The online kNN (recipe: k=20, temperature 0.1) scored the same queries with the same weights.
    assert out["evaluation"]["knn_top1"] == pytest.approx(res["knn_top1_k20"], abs=1e-9)

    # Explicit folders: the whole eval folder as bank, the (other) train folder as queries.
    assert main(["evaluate", "--checkpoint", str(run), "--k", "20", "--output", str(tmp_path / "x.json"),
                 "--eval-path", str(folders["eval_png"]), "--eval-test-path", str(folders["train_png"])]) == 0  # fmt: skip
    res = json.loads((tmp_path / "x.json").read_text())
    assert res["memory_bank"] == N_EVAL and res["queries"] == N_TRAIN
    assert res["knn_top1_k20"] > 0.3


def test_pretrain_rgb_jpeg_without_eval_path(folders, tmp_path, capsys, caplog):
    run = tmp_path / "run"
    args = ["pretrain", "image_folder_simclr", "--output", str(run),
            "--set", f"data.path={folders['train_jpg']}"]  # fmt: skip
    for o in FAST:
        args += ["--set", o]
    with caplog.at_level(logging.WARNING, logger="ssl_train"):
        assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["steps"] == 6 and np.isfinite(out["final_loss"]) and out["evaluation"] is None
    assert any(
        "online kNN evaluation is off: data.eval_path" in r.getMessage() for r in caplog.records
    )
    assert not (run / "metrics.jsonl").read_text().count("knn_top1")

    assert main(["evaluate", "--checkpoint", str(run)]) == 2
    assert "pass --eval-path DIR" in capsys.readouterr().err
    e = tmp_path / "e.json"
    assert main(["evaluate", "--checkpoint", str(run), "--k", "20", "--eval-path", str(folders["eval_jpg"]), "--output", str(e)]) == 0  # fmt: skip
    res = json.loads(e.read_text())
    assert res["memory_bank"] == N_EVAL - N_QUERIES and res["knn_top1_k20"] > 0.3


def test_errors_name_the_key(folders, tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["pretrain", "image_folder_simclr", "--output", str(tmp_path / "r"),
                 "--set", f"data.path={missing}"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert f"data.path: folder {missing} does not exist" in err
    assert not (tmp_path / "r").exists()  # checked before the run folder is made

    assert main(["pretrain", "image_folder_simclr", "--output", str(tmp_path / "r")]) == 2
    assert "data.path is not set" in capsys.readouterr().err

    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("not an image")
    with pytest.raises(
        RecipeError, match=r"data\.path: no readable image with a suffix in .*\.jpeg.*\.png.*\.webp"
    ):
        load_images(_recipe(f"data.path={empty}"))

    with pytest.raises(
        RecipeError, match=r"data\.eval_path: .*no class sub-folders.*one sub-folder"
    ):
        labelled_eval_images(_recipe(f"data.path={empty}", f"data.eval_path={empty / 'sub'}"))

    with pytest.raises(
        RecipeError,
        match=r"data: data\.mean and data\.std need one entry per channel \(data\.channels=1\)",
    ):
        _recipe("data.channels=1")
    with pytest.raises(
        RecipeError, match=r"data\.root not read when data\.dataset is image_folder"
    ):
        _recipe("data.root=/tmp")
    with pytest.raises(RecipeError, match=r"encoder\.in_channels=1 but data\.channels=3"):
        _recipe("encoder.in_channels=1")


def test_corrupt_files_are_skipped_and_counted(folders, tmp_path, caplog):
    folder = tmp_path / "mixed"
    paths = _write(folder, folders["train_x"][:70], folders["train_y"][:70], "png")
    (folder / "class_0" / "garbage.png").write_bytes(b"not a png at all")
    jpeg = _write(tmp_path / "jpeg", folders["train_x"][:1], folders["train_y"][:1], "jpg")[0]
    full = jpeg.read_bytes()
    # Its header reads (the index keeps it), its pixels do not: skipped when decoded.
    (folder / "class_0" / "truncated.jpg").write_bytes(full[: len(full) // 2])
    recipe = _recipe(f"data.path={folder}", *GRAY, *FAST)
    with caplog.at_level(logging.WARNING, logger="ssl_data"):
        loaded = load_image_folder(folder, recipe, labelled=False, key="data.path")
    order = _by_path_order(paths, folder)
    assert torch.equal(loaded.images, torch.from_numpy(folders["train_x"][:70][order]))
    assert sorted(Path(p).name for p, _ in loaded.corrupt) == ["garbage.png", "truncated.jpg"]
    assert sum("skipping unreadable file" in r.getMessage() for r in caplog.records) == 2
    with pytest.raises(CorruptFileError, match="garbage.png"):
        load_images(_recipe(f"data.path={folder}", *GRAY, *FAST, "data.on_corrupt=raise"))
