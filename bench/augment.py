"""SimCLR two-view augmentation throughput: our per-sample and batched paths vs torchvision v2.

Usage (the reference env of hatch.toml, so that every row runs on one torch build; `./dev run X`
is `hatch run X` from the repository root):
    ./dev run bench-torchvision:augment                       # all rows, 3-channel images
    ./dev run bench-torchvision:augment --threads 1           # the same rows on a 1-thread budget
    ./dev run bench-torchvision:augment --sizes 28 --channels 1   # extra: Fashion-MNIST as is
Our two paths alone, in the workspace env (torch 2.13.0 CPU, no torchvision there):
    ./dev run python bench/augment.py --paths per_sample batched

What is timed: view pairs per second (= images/s) of SimCLR two-view generation, batch 256, on
real Fashion-MNIST images (`ssl_data.load_fashion_mnist`). For 32x32 and 224x224 the 28x28 images
are resized up once beforehand (bilinear); 3-channel images are three different real images
stacked as R, G and B, so that saturation and hue have colour to work on. Each path builds the
same views: `ssl_data.SimCLRView(size, mean, std)` with its defaults (random resized crop with
scale (0.08, 1), ratio (3/4, 4/3), horizontal flip 0.5, colour jitter 0.4/0.4/0.4/0.1 with p=0.8,
grayscale 0.2, normalisation), and torchvision's v2 transforms with the same parameters, read
from that SimCLRView.

Rows, all under one thread budget of --threads (default 2) threads:
  per_sample   ssl_data.ViewDataset + collate_views in a DataLoader, --threads workers x 1 torch
               thread each (views built one sample at a time in the workers)
  batched      SimCLRView on the collated uint8 batch in the main process, torch.set_num_threads(
               --threads)
  batched_workers  (extra) the batched path inside DataLoader workers: each worker builds a whole
               batch's views at once (BatchSampler), --threads workers x 1 torch thread each
  torchvision  torchvision.transforms.v2 per sample on PIL images (RandomResizedCrop, flip,
               RandomApply(ColorJitter), RandomGrayscale, ToImage, ToDtype, Normalize) in a
               DataLoader, --threads workers x 1 torch thread each

Timing: DataLoader rows skip one batch per worker (start-up), then time --batches batches
(a quarter of them at 224x224) from the arrival of one batch to the arrival of the last, so both
ends are in steady state; the batched row runs 2 warm-up batches (1 at 224x224) in the main
process, then the timed ones. Rows are merged into bench/results/augment.json (a rerun replaces
the rows of the same path, size, channels, thread budget and torch version) and the table is
printed.

Take final numbers on an otherwise idle machine: the 1-minute load average is recorded with
every row and a warning is printed when other processes keep the CPUs busy. With more runnable
threads than cores, the main-process row with 2 OpenMP threads collapses (each parallel op
waits for a descheduled thread; ENVIRONMENT.md saw up to 16x), while the 1-thread-per-process
rows degrade only in proportion; --threads 1 gives a second, contention-robust set of rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from ssl_data import SimCLRView, ViewDataset, collate_views, load_fashion_mnist

RESULTS = Path(__file__).parent / "results" / "augment.json"
PATHS = ("per_sample", "batched", "batched_workers", "torchvision")
# Fashion-MNIST's training-set statistics (SimCLRView's defaults), repeated per channel.
MEAN, STD = 0.2860, 0.3530


def real_images(n: int, size: int, channels: int) -> torch.Tensor:
    """``(n, channels, size, size) uint8`` real Fashion-MNIST images, resized up once.

    Channel ``c`` of image ``i`` is training image ``channels * i + c``, so RGB images carry
    three different real images (real colour variation for saturation and hue).
    """
    train, _ = load_fashion_mnist("train")
    need = n * channels
    if need > len(train):
        raise ValueError(f"need {need} images, Fashion-MNIST train has {len(train)}")
    x = torch.from_numpy(train[:need].copy()).view(n, channels, 28, 28)
    if size != 28:
        x = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False)
        x = x.round_().clamp_(0, 255).to(torch.uint8)
    return x.contiguous()


def simclr_view(size: int, channels: int) -> SimCLRView:
    """SimCLRView with its defaults at ``size``; mean/std repeated for ``channels``."""
    return SimCLRView(size=size, mean=(MEAN,) * channels, std=(STD,) * channels)


def torchvision_transform(view: SimCLRView) -> Callable[[Any], torch.Tensor]:
    """torchvision.transforms.v2 pipeline with the parameters of ``view`` (PIL in, tensor out)."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomResizedCrop(view.size, scale=view.scale, ratio=view.ratio, antialias=True),
            v2.RandomHorizontalFlip(view.flip_p),
            v2.RandomApply(
                [v2.ColorJitter(view.brightness, view.contrast, view.saturation, view.hue)],
                p=view.jitter_p,
            ),
            v2.RandomGrayscale(view.grayscale_p),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(view.mean), list(view.std)),
        ]
    )


class TorchvisionPairs(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Two torchvision views of each PIL image (the reference per-sample path)."""

    def __init__(self, images: torch.Tensor, transform: Callable[[Any], torch.Tensor]):
        from PIL import Image

        arrays = images.permute(0, 2, 3, 1).numpy()
        self.images = [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arrays]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[i]
        return self.transform(image), self.transform(image)


class BatchedViews(Dataset[list[torch.Tensor]]):
    """Item = the views of a whole batch of indices, built by the batched path (in a worker)."""

    def __init__(self, images: torch.Tensor, view: SimCLRView):
        self.images, self.view = images, view

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, indices: list[int]) -> list[torch.Tensor]:
        idx = np.asarray(indices)
        return list(self.view(self.images[idx], idx, 0))


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def time_loader(batches: Iterable[Any], warmup: int, timed: int) -> float:
    """Seconds for ``timed`` batches after ``warmup``, from one batch's arrival to the last's."""
    start = None
    for k, _batch in enumerate(batches, start=1):
        if k == warmup:
            start = time.perf_counter()
        if k == warmup + timed:
            assert start is not None
            return time.perf_counter() - start
    raise RuntimeError(f"the loader gave fewer than {warmup + timed} batches")


def run_row(
    path: str, size: int, channels: int, batch: int, timed: int, threads: int
) -> dict[str, Any]:
    """Measure one (path, size, channels) row; returns its result dict."""
    workers = threads
    warmup = (1 if size > 64 else 2) if path == "batched" else workers
    n = batch * (warmup + timed + (0 if path == "batched" else workers))
    images = real_images(n, size, channels)
    view = simclr_view(size, channels)
    if path == "batched":
        torch.set_num_threads(threads)
        indices = np.arange(n)

        def batched_views() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
            for start in range(0, n - batch + 1, batch):
                yield view(images[start : start + batch], indices[start : start + batch], 0)

        seconds = time_loader(batched_views(), warmup, timed)
    else:
        data: Dataset[Any]
        if path == "batched_workers":
            sampler = BatchSampler(SequentialSampler(range(n)), batch, drop_last=True)
            loader = DataLoader(BatchedViews(images, view), batch_size=None, sampler=sampler,
                                num_workers=workers, worker_init_fn=_one_thread)  # fmt: skip
        else:
            if path == "per_sample":
                data, collate = ViewDataset(images, view), collate_views
            else:
                data, collate = TorchvisionPairs(images, torchvision_transform(view)), None
            loader = DataLoader(data, batch_size=batch, num_workers=workers, collate_fn=collate,
                                worker_init_fn=_one_thread, drop_last=True)  # fmt: skip
        seconds = time_loader(loader, warmup, timed)
    return {
        "path": path,
        "size": size,
        "channels": channels,
        "images_per_s": round(batch * timed / seconds, 1),
        "batch": batch,
        "batches_timed": timed,
        "seconds": round(seconds, 3),
        "thread_budget": threads,
        "threads_per_process": threads if path == "batched" else 1,
        "workers": 0 if path == "batched" else workers,
    }


def cpu_info() -> dict[str, Any]:
    """CPU model, count and the load average (other processes on the machine)."""
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"model": model, "cpu_count": os.cpu_count(), "load_average_1_5_15": os.getloadavg()}


def versions() -> dict[str, str | None]:
    try:
        import torchvision

        tv: str | None = torchvision.__version__
    except ImportError:
        tv = None
    return {"torch": torch.__version__, "torchvision": tv, "python": platform.python_version()}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[28, 32, 224])
    parser.add_argument("--channels", nargs="+", type=int, default=[3], choices=[1, 3])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument(
        "--batches", type=int, default=16, help="timed batches per row (224x224: a quarter)"
    )
    parser.add_argument("--threads", type=int, default=2, help="thread budget for every row")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    if "torchvision" in args.paths and versions()["torchvision"] is None:
        parser.error("no torchvision here: use ./dev run bench-torchvision:augment")
    command = " ".join([Path(sys.executable).name, *sys.argv])
    ver = versions()
    load = os.getloadavg()[0]
    busy = load > 0.5 * (os.cpu_count() or 1)
    if busy:
        print(f"warning: load average {load:.1f} on {os.cpu_count()} CPUs: other processes are "
              "running, so these numbers are not final", file=sys.stderr)  # fmt: skip
    rows = []
    for size in args.sizes:
        for channels in args.channels:
            for path in args.paths:
                timed = max(2, args.batches // 4) if size > 64 else args.batches
                row = run_row(path, size, channels, args.batch, timed, args.threads)
                row.update(torch=ver["torch"], torchvision=ver["torchvision"], command=command,
                           load_average_1min=round(os.getloadavg()[0], 2))  # fmt: skip
                rows.append(row)
                print(f"{path:<16} {size:>3}x{size:<3} C={channels} "
                      f"{row['images_per_s']:>9.0f} pairs/s", flush=True)  # fmt: skip

    data = json.loads(args.output.read_text()) if args.output.exists() else {"rows": []}

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["path"], r["size"], r["channels"], r["thread_budget"], r["torch"])

    new = {key(r) for r in rows}
    data["rows"] = [r for r in data["rows"] if key(r) not in new] + rows
    data["rows"].sort(key=lambda r: (r["torch"], r["thread_budget"], r["channels"], r["size"],
                                     PATHS.index(r["path"])))  # fmt: skip
    by_key = {key(r): r for r in data["rows"]}

    def speedup(path: str, budget: int) -> float | None:
        """``path`` ÷ torchvision at 32x32, 3 channels, one thread budget and torch build."""
        for (p, size, channels, b, build), r in by_key.items():
            ours = by_key.get((path, 32, 3, budget, build))
            if (p, size, channels, b) == ("torchvision", 32, 3, budget) and ours:
                return round(ours["images_per_s"] / r["images_per_s"], 2)
        return None

    budgets = sorted({r["thread_budget"] for r in data["rows"]})
    data.update(
        {
            "benchmark": "SimCLR two-view generation, view pairs/s (= images_per_s)",
            "thread_budget": {
                "rows": "thread_budget T of each row (--threads, default 2), the same for all paths",
                "batched": "main process, torch.set_num_threads(T)",
                "per_sample, batched_workers, torchvision": "DataLoader, T workers x 1 torch thread",
            },
            "speedup_vs_torchvision_32x32": speedup("batched", 2),
            "speedup_definition": "batched ÷ torchvision images_per_s, 32x32, 3 channels, "
            "thread budget 2, same torch build",
            "target_speedup": 3.0,
            "speedups_32x32_by_thread_budget": {
                str(b): {p: speedup(p, b) for p in PATHS if p != "torchvision"} for b in budgets
            },
            "recommended_command": "./dev run bench-torchvision:augment",
            "last_run": {
                "command": command,
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
                "versions": ver,
                "cpu": cpu_info(),
                "machine_busy": busy,
            },
        }
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(data, indent=2) + "\n")

    print(f"\n{'path':<16} {'size':>7} {'C':>2} {'threads':>7} {'pairs/s':>9} {'torch':<14} "
          f"{'load':>5}")  # fmt: skip
    for r in data["rows"]:
        print(f"{r['path']:<16} {r['size']:>3}x{r['size']:<3} {r['channels']:>2} "
              f"{r['thread_budget']:>7} {r['images_per_s']:>9.0f} {r['torch']:<14} "
              f"{r['load_average_1min']:>5}")  # fmt: skip
    print(f"speedup_vs_torchvision_32x32: {data['speedup_vs_torchvision_32x32']} (target >= 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
