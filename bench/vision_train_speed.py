"""Training throughput of our SimCLR and BYOL against LightlySSL's, side by side on one torch build.

Usage (the reference env holds torch 2.14.1, torchvision, LightlySSL and our packages; hatch.toml):
    ./dev run bench-torchvision:train-speed                       # 2 threads, both backbones
    ./dev run bench-torchvision:train-speed --backbones small_cnn --threads 1

One training step is views -> loss -> backward -> optimiser step (-> EMA update for BYOL), batch
256 of real Fashion-MNIST training images, with the same backbone instance (our recipe encoder
``small_cnn`` at 28x28, or a small-image ResNet-18 ``resnet18_small`` at 32x32), the same heads'
sizes, the same optimiser (AdamW) and the same augmentations on both sides: random resized crop
(area 0.2-1), horizontal flip 0.5, colour jitter (brightness 0.4, contrast 0.4) with p 0.8,
normalisation; BYOL adds solarisation 0.2 on its second view (no blur on 28 px images, as in the
recipes). Saturation, hue and grayscale are no-ops on one-channel images on both sides.

- ours: ssl-data's batched view generator (in the training process) -> ssl-models' method.
- LightlySSL: ``lightly.transforms`` (torchvision, per image, PIL) in a torch DataLoader ->
  ``lightly.models.modules`` heads and ``lightly.loss`` (NTXentLoss; NegativeCosineSimilarity with
  ``update_momentum`` and ``cosine_schedule``), the loop its examples show. The loader runs with
  0 and with ``--threads`` workers, and LightlySSL's faster configuration is the reference.
- SimCLR is also timed with ``views_in_one_pass=False`` (``ours_per_view``,
  ``ratio_vs_lightly_per_view``): one encoder pass per view, batch-norm statistics per view, the
  same computation as LightlySSL's two encoder calls. Our default passes both views as one batch
  (SimCLR's reference implementation), which costs a ResNet-18 some speed on CPU.

Each configuration runs ``--warmup`` untimed steps, then ``--steps`` timed steps; this repeats
``--repeats`` times (configurations alternate) and the median images/s is reported. The thread
count (``torch.set_num_threads``) is the same everywhere. A third measurement, the bare encoder
(forward + backward of the backbone alone on both pre-augmented views, a mean-square "loss", no
head, no optimiser) against our full step on the same pre-augmented views, gives
``ratio_full_step_vs_bare_encoder`` (target <= 1.10).

Writes bench/results/vision_train_speed.json (``ratio_vs_lightly_simclr``,
``ratio_vs_lightly_byol``, ``ratio_full_step_vs_bare_encoder``, per-backbone rows with their
thread count, repeats and load average) and prints a table. Rows of a (backbone, method) pair
not run this time are kept from the existing file, so one backbone or method can be rerun alone.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from ssl_data import load_fashion_mnist
from ssl_data.views import BYOLView, SimCLRView
from ssl_models import build_encoder, build_method

RESULTS = Path(__file__).parent / "results" / "vision_train_speed.json"
BATCH = 256
MEAN, STD = (0.2860,), (0.3530,)
BACKBONES = {
    "small_cnn": ({"name": "small_cnn", "in_channels": 1, "widths": [32, 64, 128], "stem_stride": 2}, 28),
    "resnet18_small": ({"name": "resnet18_small", "in_channels": 1}, 32),
}  # fmt: skip
# Head sizes of the shipped Fashion-MNIST recipes.
SIMCLR = {"name": "simclr", "projection_hidden_dim": 512, "projection_dim": 128, "temperature": 0.2}
BYOL = {"name": "byol", "projection_hidden_dim": 1024, "projection_dim": 128,
        "prediction_hidden_dim": 1024, "base_momentum": 0.996}  # fmt: skip
AUG = {"scale": (0.2, 1.0), "flip_p": 0.5, "jitter_p": 0.8, "brightness": 0.4, "contrast": 0.4,
       "blur_p": (0.0, 0.0), "mean": MEAN, "std": STD}  # fmt: skip

Step = Callable[[], None]


def _images(size: int) -> torch.Tensor:
    images, _ = load_fashion_mnist("train")
    x = torch.from_numpy(np.ascontiguousarray(images))
    if size != x.shape[-1]:  # 28 -> 32 for the small-image ResNet: zero padding, as CIFAR-sized
        pad = (size - x.shape[-1]) // 2
        x = torch.nn.functional.pad(x, (pad, size - x.shape[-1] - pad) * 2)
    return x


def _batches(n: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n)
        for i in range(0, n - BATCH + 1, BATCH):
            yield order[i : i + BATCH]


# ---------------------------------------------------------------------------------------- ours
def ours(method_name: str, backbone: str, images: torch.Tensor, per_view: bool = False) -> Step:
    enc_cfg, size = BACKBONES[backbone]
    torch.manual_seed(0)
    cfg = SIMCLR if method_name == "simclr" else BYOL
    if per_view:
        cfg = {**cfg, "views_in_one_pass": False}
    model = build_method(cfg, build_encoder(enc_cfg))
    view_cls = SimCLRView if method_name == "simclr" else BYOLView
    views = view_cls(size=size, **AUG)  # type: ignore[arg-type]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    batches, state = _batches(len(images), 0), {"step": 0}

    def step() -> None:
        idx = next(batches)
        loss = model.training_loss(views(images[idx], idx, 0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["step"] += 1
        model.after_optimizer_step(state["step"], 10**6)

    return step


def pre_augmented(backbone: str, images: torch.Tensor) -> tuple[Step, Step]:
    """(our full SimCLR step, the bare encoder step) on the same fixed pre-augmented views."""
    enc_cfg, size = BACKBONES[backbone]
    views = SimCLRView(size=size, **AUG)  # type: ignore[arg-type]
    idx = np.arange(BATCH)
    fixed = [v.contiguous() for v in views(images[idx], idx, 0)]
    torch.manual_seed(0)
    model = build_method(SIMCLR, build_encoder(enc_cfg))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    torch.manual_seed(0)
    encoder = build_encoder(enc_cfg)

    def full() -> None:
        loss = model.training_loss(fixed)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.after_optimizer_step(1, 1)

    def bare() -> None:
        encoder.zero_grad(set_to_none=True)
        torch.cat([encoder(fixed[0]), encoder(fixed[1])]).pow(2).mean().backward()

    return full, bare


# ---------------------------------------------------------------------------------- LightlySSL
class _PilDataset(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, transform: Callable) -> None:
        from PIL import Image

        self.images = [Image.fromarray(a) for a in images.numpy()]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        return self.transform(self.images[i])


def _loader(
    images: torch.Tensor, transform: Callable, workers: int
) -> Iterator[list[torch.Tensor]]:
    loader = torch.utils.data.DataLoader(
        _PilDataset(images, transform), batch_size=BATCH, shuffle=True, drop_last=True,
        num_workers=workers, persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    while True:
        yield from loader


def lightly_step(method_name: str, backbone: str, images: torch.Tensor, workers: int) -> Step:
    from lightly.loss import NegativeCosineSimilarity, NTXentLoss
    from lightly.models.modules import (
        BYOLPredictionHead,
        BYOLProjectionHead,
        SimCLRProjectionHead,
    )
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms import (
        BYOLTransform,
        BYOLView1Transform,
        BYOLView2Transform,
        SimCLRTransform,
    )
    from lightly.utils.scheduler import cosine_schedule

    enc_cfg, size = BACKBONES[backbone]
    common = dict(input_size=size, cj_prob=0.8, cj_strength=1.0, cj_bright=0.4, cj_contrast=0.4,
                  cj_sat=0.0, cj_hue=0.0, min_scale=0.2, hf_prob=0.5, vf_prob=0.0, rr_prob=0.0,
                  gaussian_blur=0.0, normalize={"mean": list(MEAN), "std": list(STD)})  # fmt: skip
    torch.manual_seed(0)
    backbone_net = build_encoder(enc_cfg)
    dim = backbone_net.output_dim
    if method_name == "simclr":
        transform = SimCLRTransform(random_gray_scale=0.0, **common)
        head = SimCLRProjectionHead(dim, SIMCLR["projection_hidden_dim"], SIMCLR["projection_dim"])
        criterion = NTXentLoss(temperature=SIMCLR["temperature"])
        params = [*backbone_net.parameters(), *head.parameters()]
    else:
        transform = BYOLTransform(
            BYOLView1Transform(random_gray_scale=0.2, solarization_prob=0.0, **common),
            BYOLView2Transform(random_gray_scale=0.2, solarization_prob=0.2, **common),
        )
        head = BYOLProjectionHead(dim, BYOL["projection_hidden_dim"], BYOL["projection_dim"])
        predictor = BYOLPredictionHead(
            BYOL["projection_dim"], BYOL["prediction_hidden_dim"], BYOL["projection_dim"]
        )

        backbone_m, head_m = copy.deepcopy(backbone_net), copy.deepcopy(head)
        deactivate_requires_grad(backbone_m)
        deactivate_requires_grad(head_m)
        criterion = NegativeCosineSimilarity()
        params = [*backbone_net.parameters(), *head.parameters(), *predictor.parameters()]
    opt = torch.optim.AdamW(params, lr=2e-3)
    batches, state = _loader(images, transform, workers), {"step": 0}

    def step() -> None:
        x0, x1 = next(batches)
        if method_name == "simclr":
            loss = criterion(head(backbone_net(x0)), head(backbone_net(x1)))
        else:
            m = cosine_schedule(state["step"], 10**6, BYOL["base_momentum"], 1.0)
            update_momentum(backbone_net, backbone_m, m=m)
            update_momentum(head, head_m, m=m)
            p0, p1 = predictor(head(backbone_net(x0))), predictor(head(backbone_net(x1)))
            with torch.no_grad():
                z0, z1 = head_m(backbone_m(x0)), head_m(backbone_m(x1))
            loss = 0.5 * (criterion(p0, z1) + criterion(p1, z0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["step"] += 1

    return step


# ------------------------------------------------------------------------------------ timing
def _images_per_s(step: Step, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * BATCH / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument(
        "--methods", nargs="+", default=["simclr", "byol"], choices=["simclr", "byol"]
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per repeat")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import lightly

    load_before = os.getloadavg()[0]
    rows = []
    for backbone in args.backbones:
        first_row, backbone_load = len(rows), os.getloadavg()[0]
        images = _images(BACKBONES[backbone][1])
        # Both the slower ResNet steps and the loader workers: fewer timed steps per repeat.
        steps = args.steps if backbone == "small_cnn" else max(2, args.steps // 5)
        for method in args.methods:
            configs: dict[str, Step] = {"ours": ours(method, backbone, images)}
            if method == "simclr":  # batch norm per view, like LightlySSL's two encoder calls
                configs["ours_per_view"] = ours(method, backbone, images, per_view=True)
            for w in sorted({0, args.threads}):
                configs[f"lightly_workers{w}"] = lightly_step(method, backbone, images, w)
            runs: dict[str, list[float]] = {k: [] for k in configs}
            for r in range(args.repeats):
                for name, step in configs.items():
                    runs[name].append(_images_per_s(step, args.warmup, steps))
                    print(f"{backbone} {method} {name} repeat {r}: {runs[name][-1]:.1f} img/s",
                          flush=True)  # fmt: skip
            med = {k: statistics.median(v) for k, v in runs.items()}
            best_lightly = max((k for k in med if k.startswith("lightly")), key=med.__getitem__)
            rows.append({"backbone": backbone, "method": method, "steps_per_repeat": steps,
                         "images_per_s": {k: round(v, 1) for k, v in med.items()},
                         "lightly_best": best_lightly,
                         "ratio_vs_lightly": round(med["ours"] / med[best_lightly], 3),
                         "repeats": {k: [round(x, 1) for x in v] for k, v in runs.items()}})  # fmt: skip
            if "ours_per_view" in med:
                rows[-1]["ratio_vs_lightly_per_view"] = round(
                    med["ours_per_view"] / med[best_lightly], 3
                )
        full, bare = pre_augmented(backbone, images)
        pair: dict[str, list[float]] = {"full": [], "bare": []}
        for _ in range(args.repeats):
            pair["bare"].append(_images_per_s(bare, args.warmup, steps))
            pair["full"].append(_images_per_s(full, args.warmup, steps))
        ratios = [b / f for b, f in zip(pair["bare"], pair["full"], strict=True)]
        rows.append({"backbone": backbone, "method": "simclr_pre_augmented",
                     "images_per_s": {k: round(statistics.median(v), 1) for k, v in pair.items()},
                     "ratio_full_step_vs_bare_encoder": round(statistics.median(ratios), 3)})  # fmt: skip
        for row in rows[first_row:]:  # rows of other runs may be merged in below
            row.update(threads=args.threads, repeats_n=args.repeats,
                       load_avg_1min=[round(backbone_load, 2), round(os.getloadavg()[0], 2)])  # fmt: skip
    # A (backbone, method) pair not run this time keeps its row from the results file.
    if args.output.exists():
        done = {(r["backbone"], r["method"]) for r in rows}
        kept = json.loads(args.output.read_text()).get("rows", [])
        rows = [r for r in kept if (r["backbone"], r["method"]) not in done] + rows

    def _pick(method: str, key: str, backbone: str = "small_cnn") -> float | None:
        hit = [r[key] for r in rows if r["method"] == method and r["backbone"] == backbone]
        return hit[0] if hit else None

    result = {
        "ratio_vs_lightly_simclr": _pick("simclr", "ratio_vs_lightly"),
        "ratio_vs_lightly_byol": _pick("byol", "ratio_vs_lightly"),
        "ratio_full_step_vs_bare_encoder": _pick("simclr_pre_augmented", "ratio_full_step_vs_bare_encoder"),
        "headline_backbone": "small_cnn",
        "batch_size": BATCH, "threads": args.threads, "repeats": args.repeats,
        "cpu_count": os.cpu_count(), "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "torch": torch.__version__, "lightly": lightly.__version__, "python": platform.python_version(),
        "rows": rows,
    }  # fmt: skip
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'backbone':<15} {'method':<22} {'ours':>8} {'lightly':>8} {'ratio':>6}")
    for r in rows:
        ips = r["images_per_s"]
        if "ratio_vs_lightly" in r:
            print(f"{r['backbone']:<15} {r['method']:<22} {ips['ours']:>8.1f} "
                  f"{ips[r['lightly_best']]:>8.1f} {r['ratio_vs_lightly']:>6.3f}")  # fmt: skip
            if "ratio_vs_lightly_per_view" in r:
                print(f"{r['backbone']:<15} {'simclr, BN per view':<22} {ips['ours_per_view']:>8.1f} "
                      f"{ips[r['lightly_best']]:>8.1f} {r['ratio_vs_lightly_per_view']:>6.3f}")  # fmt: skip
        else:
            print(f"{r['backbone']:<15} {'full step / bare enc':<22} {ips['full']:>8.1f} "
                  f"{ips['bare']:>8.1f} {r['ratio_full_step_vs_bare_encoder']:>6.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
