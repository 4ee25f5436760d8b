"""Pretrain an image encoder on a folder of your own images, evaluate it, serve it, call it.

The whole first hour of the stack on real Fashion-MNIST pictures, written to disk as PNG files
(``images/{train,test}/<class>/<n>.png``) to stand in for your own photos:

1. read the folder with ``ssl_data.ImageFolder`` (corrupt files are counted, not fatal);
2. pretrain SimCLR (arXiv:2002.05709) with ``ssl-train pretrain fashion_mnist_simclr``. Recipes
   read 28x28 grayscale images from IDX files only (there is no image-folder data source in
   recipes yet), so step 1 packs the folder into the four IDX files a recipe's ``data.root``
   points at, with the folder's own mean and std;
3. ``ssl-train evaluate``: kNN top-1 (train split = memory bank, test split = queries);
4. ``ssl-serve export`` the encoder to an ONNX bundle in a model repository;
5. ``ssl-serve serve`` it in another process and embed the PNG files' bytes over gRPC with
   ``ssl_serve.EmbeddingClient``;
6. ``ssl-train evaluate --embeddings`` on the served embeddings: the same kNN accuracy as step 3.

Run (about 4 minutes on 2 shared CPU cores; ``--fast``: about 35 s)::

    ./dev run python examples/images_pretrain_serve.py [--fast] [--workdir DIR]

The last line printed is a JSON summary (the test in ``tests/test_examples.py`` reads it).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import struct
import sys
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from ssl_data import FASHION_MNIST_CLASSES, ImageFolder, load_fashion_mnist
from ssl_serve import EmbeddingClient

sys.path.insert(0, str(Path(__file__).parent))
from _serving import run_cli, serve

MODEL = "my-images"


def write_png_folder(root: Path, train: int, test: int) -> None:
    """Write the first ``train`` / ``test`` Fashion-MNIST images as ``root/<split>/<class>/n.png``.

    Class folders are the class names with ``/`` replaced (``T-shirt_top``).
    """
    splits: tuple[tuple[Literal["train", "test"], int], ...] = (("train", train), ("test", test))
    for split, count in splits:
        images, labels = load_fashion_mnist(split)
        for n, (image, label) in enumerate(zip(images[:count], labels[:count], strict=True)):
            folder = root / split / FASHION_MNIST_CLASSES[label].replace("/", "_")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{n:05d}.png")


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzip IDX file (LeCun's MNIST format: magic, dims, big-endian)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def pack_folder(images_root: Path, data_root: Path) -> dict[str, object]:
    """Read ``images_root/{train,test}`` with ImageFolder and write the recipe's IDX files.

    Returns:
        The folder's class names, sizes, skipped files and pixel mean/std (train split, [0, 1]).
    """
    data_root.mkdir(parents=True, exist_ok=True)
    info: dict[str, object] = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        folder = ImageFolder(images_root / split, mode="L", verify="header")
        images = np.stack([folder[i][0][0].numpy() for i in range(len(folder))])  # (N, 28, 28)
        if images.shape[1:] != (28, 28):
            raise ValueError(f"the recipe expects 28x28 images, got {images.shape[1:]} pixels")
        write_idx(data_root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(data_root / f"{prefix}-labels-idx1-ubyte.gz", folder.labels.astype(np.uint8))
        info[f"{split}_images"] = len(folder)
        info[f"{split}_corrupt"] = folder.corrupt.count
        if split == "train":
            pixels = images.astype(np.float64) / 255.0
            info.update(classes=list(folder.classes), mean=pixels.mean(), std=pixels.std())
    return info


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="tiny budget (CI): ~35 s")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir)")
    args = parser.parse_args(argv)
    train, test, steps, batch = (1000, 300, 8, 128) if args.fast else (10000, 2000, 150, 256)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        images, data, run, repo = (work / n for n in ("images", "data", "run", "repository"))

        write_png_folder(images, train, test)
        info = pack_folder(images, data)
        print(
            f"1. your own images: {info['train_images']} + {info['test_images']} Fashion-MNIST "
            f"PNG files in {images} ({info['train_corrupt']} + {info['test_corrupt']} corrupt)"
        )
        print(f"   classes {info['classes']}, mean {info['mean']:.4f}, std {info['std']:.4f}")

        print("2. pretrain SimCLR (shipped recipe, data.root = the packed folder)")
        out = run_cli(
            "ssl-train", "pretrain", "fashion_mnist_simclr", "--output", str(run), "--overwrite",
            "--set", f"data.root={data}",
            "--set", f"data.mean=[{info['mean']:.6f}]", "--set", f"data.std=[{info['std']:.6f}]",
            "--set", f"budget.steps={steps}", "--set", f"budget.batch_size={batch}",
            "--set", "schedule.warmup_steps=2", "--set", f"checkpoint.every_steps={steps}",
            "--set", "threads=1", "--set", "logging.progress_bar=false",
        )  # fmt: skip
        trained = json.loads(out.strip().splitlines()[-1])
        losses = [
            json.loads(line)["loss"]
            for line in (run / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)
        ]

        print("3. kNN evaluation of the checkpoint (in-process embeddings)")
        in_process = json.loads(
            run_cli(
                "ssl-train", "evaluate", "--checkpoint", str(run), "--k", "20", "--threads", "1"
            )
        )

        print("4. export the encoder to an ONNX bundle")
        run_cli("ssl-serve", "export", str(run), "--repository", str(repo), "--name", MODEL)
        bundle = json.loads((repo / MODEL / "1" / "bundle.json").read_text())

        print("5. serve it and embed the PNG files over gRPC")
        served: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        with serve(repo) as target, EmbeddingClient(target) as client:
            client.wait_until_serving(30)
            for split in ("train", "test"):
                folder = ImageFolder(images / split, mode="L", verify="none")
                pngs = [p.read_bytes() for p in folder.paths]
                served[split] = (client.embed_images(MODEL, pngs, batch_size=256), folder.labels)
            one = client.embed_images(MODEL, [_png_bytes(images / "test")])

        print("6. kNN evaluation of the served embeddings")
        npz = work / "served.npz"
        np.savez(
            npz,
            train_embeddings=served["train"][0], train_labels=served["train"][1],
            test_embeddings=served["test"][0], test_labels=served["test"][1],
        )  # fmt: skip
        over_grpc = json.loads(
            run_cli("ssl-train", "evaluate", "--embeddings", str(npz), "--k", "20")
        )
        test_emb = served["test"][0]
        summary: dict[str, object] = {
            "steps": trained["steps"],
            "loss_first": losses[0],
            "loss_last": losses[-1],
            "knn_top1_in_process": in_process["knn_top1_k20"],
            "knn_top1_served": over_grpc["knn_top1_k20"],
            "embedding_dim": bundle["embedding_dim"],
            "export_max_abs_diff": bundle["validation"]["max_abs_diff"],
            "served_shape": list(test_emb.shape),
            "max_norm_error": float(np.abs(np.linalg.norm(test_emb, axis=1) - 1).max()),
            "single_png_max_abs_diff": float(np.abs(one[0] - test_emb[0]).max()),
            "classes": info["classes"],
            "images": [info["train_images"], info["test_images"]],
        }
        print(json.dumps(summary))
        return summary


def _png_bytes(split_root: Path) -> bytes:
    """The first PNG (in ImageFolder's order) of a split, re-encoded through Pillow."""
    first = ImageFolder(split_root, mode="L", verify="none").paths[0]
    buf = io.BytesIO()
    Image.open(first).save(buf, format="PNG")
    return buf.getvalue()


if __name__ == "__main__":
    main()
