"""Forward + backward of one encoder: both views as one batch of 2B, or as two batches of B.

Usage (inside the workspace): ./dev run python bench/encoder_batch_split.py --threads 1

Our SimCLR passes both views through the encoder as one batch (batch-norm statistics over both
views, as in the paper's implementation); LightlySSL's training loop passes each view as its own
batch. This times the two ways on the same random input (the cost of a convolution does not depend
on the pixel values) and prints the seconds per step of each, median of ``--repeats``, the two
alternating. Prints only; nothing is written.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ssl_models import build_encoder


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", default="resnet18_small")
    parser.add_argument("--batch", type=int, default=256, help="B, the batch of one view")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    encoder = build_encoder({"name": args.encoder, "in_channels": 1})
    b = args.batch
    x = torch.randn(2 * b, 1, args.size, args.size)

    def joint() -> None:
        encoder.zero_grad(set_to_none=True)
        encoder(x).pow(2).mean().backward()

    def split() -> None:
        encoder.zero_grad(set_to_none=True)
        torch.cat([encoder(x[:b]), encoder(x[b:])]).pow(2).mean().backward()

    steps = {"one batch of 2B": joint, "two batches of B": split}
    for step in steps.values():  # warm-up
        step()
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            seconds[name].append(time.perf_counter() - t0)
    print(f"{args.encoder}, B={b}, {args.size} px, {args.threads} thread(s)")
    for name, s in seconds.items():
        print(f"{name:<17} {statistics.median(s):7.2f} s  ({', '.join(f'{v:.2f}' for v in s)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
