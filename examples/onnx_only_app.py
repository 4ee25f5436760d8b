"""Use an exported text bundle in an application that has none of our packages.

A bundle is a folder a user can copy anywhere: ``model.onnx`` (pooling and L2 normalisation are
inside the graph; dynamic batch and sequence axes), ``bundle.json`` (inputs, preprocessing) and
``tokenizer.json``. This app needs only ``onnxruntime``, ``tokenizers`` and numpy: it reads the
preprocessing from ``bundle.json``, tokenises real quotes (Debian's fortunes), runs the graph,
and checks that a text embedded alone equals the same text inside a padded batch. With
``--server HOST:PORT`` it also asks a running ssl-serve for the same texts (through a stub
compiled from ``proto/``, as in ``client_grpc_stub.py``) and reports the largest difference.

Where the bundle comes from (not part of the app): ``--bundle DIR``; or ``--repository R`` (uses
``R/minilm/1``, exported when missing); or, by default, all-MiniLM-L6-v2 exported into a temp
folder with ``ssl-serve export --hf-model ... --output DIR`` (about 30 s). Run::

    ./dev run python examples/onnx_only_app.py [--fast] [--bundle DIR] [--server HOST:PORT]

The last line printed is a JSON summary (the test in ``tests/test_examples.py`` reads it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from _serving import MINILM, ensure_minilm, real_texts  # standard library only


class OnnxEmbedder:
    """Text embeddings from a bundle folder with onnxruntime (CPU) and ``tokenizers``.

    Args:
        bundle: Folder with ``model.onnx``, ``bundle.json`` and the tokenizer it names.
        threads: onnxruntime intra-op threads.

    Raises:
        ValueError: The bundle is not a text bundle.
    """

    def __init__(self, bundle: Path, threads: int = 1) -> None:
        self.spec = json.loads((bundle / "bundle.json").read_text())
        if self.spec["modality"] != "text":
            raise ValueError(f"{bundle} holds a {self.spec['modality']!r} model, not 'text'")
        pre = self.spec["preprocessing"]
        self.tokenizer = Tokenizer.from_file(str(bundle / pre["tokenizer"]))
        self.tokenizer.enable_truncation(pre["max_length"])
        self.tokenizer.enable_padding(pad_id=pre["pad_id"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, texts: list[str]) -> np.ndarray:
        """``(N, D) float32`` L2-normalised embeddings of ``texts`` (one padded batch)."""
        encodings = self.tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        (emb,) = self.session.run(["embedding"], {k: feeds[k] for k in self.input_names})
        return np.asarray(emb, dtype=np.float32)


def served_embeddings(target: str, model: str, texts: list[str]) -> np.ndarray:
    """The server's embeddings of ``texts`` via a stub generated from ``proto/`` (no ssl_serve)."""
    import grpc
    from client_grpc_stub import PROTO, compile_stubs

    with tempfile.TemporaryDirectory() as out, grpc.insecure_channel(target) as channel:
        pb2, pb2_grpc = compile_stubs(PROTO, Path(out))
        request = pb2.EmbedRequest(model_name=model, inputs=[pb2.Input(text=t) for t in texts])
        response = pb2_grpc.EmbeddingServiceStub(channel).Embed(request, timeout=60)
    return np.frombuffer(response.embeddings, dtype="<f4").reshape(tuple(response.shape))


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="fewer texts (CI)")
    parser.add_argument("--bundle", type=Path, help="a text bundle folder")
    parser.add_argument(
        "--repository", type=Path, help="use REPOSITORY/minilm/1 (exported if missing)"
    )
    parser.add_argument("--server", help="host:port of an ssl-serve serving the same bundle")
    parser.add_argument("--model", default=MINILM, help="its model name on --server")
    parser.add_argument("--save", type=Path, help="write the embeddings here (.npy)")
    args = parser.parse_args(argv)
    texts = real_texts(16 if args.fast else 200)

    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or ensure_minilm(args.repository or Path(tmp))
        embedder = OnnxEmbedder(bundle)
        print(f"loaded {bundle}: inputs {embedder.input_names}, D={embedder.spec['embedding_dim']}")
        emb = embedder(texts)
        alone = np.concatenate([embedder([t]) for t in texts[:8]])
    padding_diff = float(np.abs(alone - emb[:8]).max())
    print(f"embedded {len(texts)} quotes: {emb.shape}; alone vs padded batch: {padding_diff:.1e}")
    sims = emb @ emb.T
    np.fill_diagonal(sims, -2)
    i, j = np.unravel_index(int(sims.argmax()), sims.shape)
    print(f"  most similar pair ({sims[i, j]:.2f}): {texts[i][:50]!r} ~ {texts[j][:50]!r}")

    summary: dict[str, object] = {
        "shape": list(emb.shape),
        "max_norm_error": float(np.abs(np.linalg.norm(emb, axis=1) - 1).max()),
        "padding_max_abs_diff": padding_diff,
        "served_max_abs_diff": None,
    }
    if args.server:
        served = served_embeddings(args.server, args.model, texts)
        summary["served_max_abs_diff"] = float(np.abs(served - emb).max())
        print(
            f"served by {args.server} vs this app: max |diff| = {summary['served_max_abs_diff']:.1e}"
        )
    if args.save:
        np.save(args.save, emb)
    summary["ssl_imported"] = sorted({m.split(".")[0] for m in sys.modules if m.startswith("ssl_")})
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
