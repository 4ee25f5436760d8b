"""The main job, end to end on real Fashion-MNIST: pretrain -> checkpoint -> ONNX bundle -> gRPC
server -> embeddings over gRPC -> kNN top-1 beside two baselines.

Each step is the user-facing CLI (printed before it runs), so every step can be run alone.
Writes ``<output>/summary.json`` and prints a table. ``hatch run demo --help`` lists the options.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ssl_data import load_fashion_mnist
from ssl_data.datasets import fashion_mnist_root
from ssl_serve.client import EmbeddingClient

RECIPE = "fashion_mnist_simclr"
MODEL, RANDOM_MODEL = "fashion-mnist-simclr", "fashion-mnist-random-init"


def run(cmd: list[str]) -> str:
    """Run one CLI step, echoing it; return its last stdout line."""
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        raise SystemExit(f"demo: step failed with exit code {proc.returncode}: {shlex.join(cmd)}")
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def png_bytes(images: np.ndarray) -> list[bytes]:
    """Encode ``(N, H, W) uint8`` images as PNG files' bytes."""
    out = []
    for img in tqdm(images, desc="encode PNG", unit="img", leave=False):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def embed_over_grpc(
    client: EmbeddingClient, model: str, images: list[bytes], batch: int, workers: int
) -> tuple[np.ndarray, float]:
    """Embed through the server with ``workers`` concurrent requests; returns (N, D) and images/s."""
    chunks = [images[i : i + batch] for i in range(0, len(images), batch)]
    bar = tqdm(total=len(images), desc=f"gRPC embed {model}", unit="img")
    start = time.perf_counter()

    def call(chunk: list[bytes]) -> np.ndarray:
        emb = client.embed_images(model, chunk, batch_size=batch)
        bar.update(len(chunk))
        return emb

    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(call, chunks))
    seconds = time.perf_counter() - start
    bar.close()
    return np.concatenate(parts), len(images) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", default="runs/demo", help="run folder (default: runs/demo)")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help="wall-clock cap on pretraining (default: the recipe's, about 5 minutes on 2 cores)",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="pretraining steps (default: the recipe's)"
    )
    parser.add_argument(
        "--memory-bank",
        type=int,
        default=None,
        help="train images in the kNN memory bank (default: all)",
    )
    parser.add_argument(
        "--queries", type=int, default=None, help="test images to classify (default: all 10,000)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=256, help="images per gRPC request (default: 256)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="concurrent gRPC requests (default: 2)"
    )
    args = parser.parse_args()

    out = Path(args.output)
    repo = out / "repository"
    emb_dir = out / "embeddings"
    emb_dir.mkdir(parents=True, exist_ok=True)
    print(f"Fashion-MNIST from {fashion_mnist_root()}")

    # 1-2. Pretrain SimCLR, and the same recipe at step 0 as the random-weights baseline.
    overrides = []
    if args.budget_minutes is not None:
        overrides += ["--set", f"budget.max_minutes={args.budget_minutes}"]
    if args.steps is not None:
        overrides += ["--set", f"budget.steps={args.steps}"]
    pretrain = json.loads(
        run(
            [
                "ssl-train",
                "pretrain",
                RECIPE,
                "--output",
                str(out / "pretrain"),
                "--overwrite",
                *overrides,
            ]
        )
    )
    run(
        [
            "ssl-train",
            "pretrain",
            RECIPE,
            "--output",
            str(out / "random-init"),
            "--overwrite",
            "--set",
            "budget.steps=0",
            "--set",
            "logging.progress_bar=false",
        ]
    )

    # 3. Export both to ONNX bundles in one model repository (validated against PyTorch on real images).
    for run_dir, name in ((out / "pretrain", MODEL), (out / "random-init", RANDOM_MODEL)):
        run(
            [
                "ssl-serve",
                "export",
                str(run_dir),
                "--repository",
                str(repo),
                "--name",
                name,
                "--version",
                "1",
                "--overwrite",
            ]
        )
    bundle = json.loads((repo / MODEL / "1" / "bundle.json").read_text())

    # 4. Serve the repository from a separate process; wait for grpc.health.v1 SERVING.
    cmd = ["ssl-serve", "serve", "--repository", str(repo), "--host", "127.0.0.1", "--port", "0"]
    print(f"\n$ {shlex.join(cmd)} &", flush=True)
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline() if server.stdout else ""
        if "listening on" not in line:
            raise SystemExit(
                f"demo: server did not start (said {line!r}, exit code {server.poll()})"
            )
        target = line.strip().rsplit(" ", 1)[-1]
        print(line.strip())
        with EmbeddingClient(target, timeout_s=120) as client:
            client.wait_until_serving(60)

            # 5. Embed the test set and the labelled memory bank as PNG bytes over gRPC.
            train_x, train_y = load_fashion_mnist("train")
            test_x, test_y = load_fashion_mnist("test")
            train_x, train_y = train_x[: args.memory_bank], train_y[: args.memory_bank]
            test_x, test_y = test_x[: args.queries], test_y[: args.queries]
            pngs = png_bytes(np.concatenate([train_x, test_x]))
            n_train = len(train_x)
            speeds = {}
            for name in (MODEL, RANDOM_MODEL):
                emb, speeds[name] = embed_over_grpc(
                    client, name, pngs, args.batch_size, args.workers
                )
                np.savez(
                    emb_dir / f"{name}.npz",
                    train_embeddings=emb[:n_train],
                    train_labels=train_y,
                    test_embeddings=emb[n_train:],
                    test_labels=test_y,
                )
    finally:
        server.terminate()
        server.wait(timeout=30)
    raw = lambda a: a.reshape(len(a), -1).astype(np.float32) / 255  # noqa: E731
    np.savez(
        emb_dir / "raw-pixels.npz",
        train_embeddings=raw(train_x),
        train_labels=train_y,
        test_embeddings=raw(test_x),
        test_labels=test_y,
    )

    # 6. kNN top-1 (cosine, temperature-weighted votes) on the served embeddings and the baselines.
    scores = {}
    for name in (MODEL, RANDOM_MODEL, "raw-pixels"):
        scores[name] = json.loads(
            "".join(
                subprocess.run(
                    [
                        "ssl-train",
                        "evaluate",
                        "--embeddings",
                        str(emb_dir / f"{name}.npz"),
                        "--k",
                        "20",
                        "200",
                    ],
                    check=True,
                    stdout=subprocess.PIPE,
                    text=True,
                ).stdout
            )
        )
    summary = {
        "knn_top1": scores[MODEL]["knn_top1_k200"],
        "knn_top1_raw_pixels": scores["raw-pixels"]["knn_top1_k200"],
        "knn_top1_random_encoder": scores[RANDOM_MODEL]["knn_top1_k200"],
        "knn_top1_k20": scores[MODEL]["knn_top1_k20"],
        "knn_top1_raw_pixels_k20": scores["raw-pixels"]["knn_top1_k20"],
        "knn_top1_random_encoder_k20": scores[RANDOM_MODEL]["knn_top1_k20"],
        "knn": {
            "k": 200,
            "temperature": 0.1,
            "metric": "cosine",
            "memory_bank": n_train,
            "queries": len(test_x),
        },
        "export_max_abs_diff": bundle["validation"]["max_abs_diff"],
        "export_min_cosine": bundle["validation"]["min_cosine"],
        "pretrain_images_per_s": pretrain["images_per_s"],
        "pretrain_steps": pretrain["steps"],
        "pretrain_seconds": pretrain["seconds"],
        "grpc_images_per_s": speeds[MODEL],
        "grpc": {
            "batch_size": args.batch_size,
            "concurrent_requests": args.workers,
            "encoding": "PNG",
        },
        "cpu_count": os.cpu_count(),
        "dataset": str(fashion_mnist_root()),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    labels = {
        MODEL: f"SimCLR, {pretrain['steps']} steps (served)",
        RANDOM_MODEL: "same encoder, random weights (served)",
        "raw-pixels": "raw pixels",
    }
    print(
        f"\nkNN top-1 on Fashion-MNIST ({len(test_x)} test queries, memory bank {n_train}, cosine, t=0.1)"
    )
    print(f"  {'embeddings':<40} {'k=20':>8} {'k=200':>8}")
    for name, label in labels.items():
        print(
            f"  {label:<40} {scores[name]['knn_top1_k20']:>8.4f} {scores[name]['knn_top1_k200']:>8.4f}"
        )
    print(
        f"\n  pretraining      {summary['pretrain_images_per_s']:.0f} images/s"
        f" ({pretrain['steps']} steps, {pretrain['seconds']:.0f} s)"
    )
    print(f"  export parity    max |onnx - torch| = {summary['export_max_abs_diff']:.2e}")
    print(
        f"  gRPC throughput  {summary['grpc_images_per_s']:.0f} images/s"
        f" (PNG, batch {args.batch_size}, {args.workers} concurrent requests)"
    )
    print(f"\nwrote {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
