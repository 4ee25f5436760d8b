"""Call ssl-serve through a plain gRPC stub generated from ``proto/`` at run time.

Any language with gRPC can call ssl-serve from ``proto/ssl_serve/v1/embedding.proto`` alone. In
Python: compile it with ``grpc_tools.protoc`` (PyPI ``grpcio-tools``) into a temporary folder,
import the generated ``embedding_pb2`` / ``embedding_pb2_grpc`` from there, and call
``ListModels``, ``GetModel`` and ``Embed`` (embeddings come back as packed little-endian float32
bytes of shape ``response.shape``, with timing and usage). ``ssl_serve`` is never imported: the
summary's ``ssl_serve_imported`` says so. The server itself is started with the ``ssl-serve`` CLI
(or pass ``--server``). The equivalent shell command::

    python -m grpc_tools.protoc -I proto/ssl_serve/v1 --python_out=OUT --grpc_python_out=OUT \\
        proto/ssl_serve/v1/embedding.proto

Run::

    ./dev run python examples/client_grpc_stub.py [--fast] [--repository DIR] [--server HOST:PORT]

The last line printed is a JSON summary (the test in ``tests/test_examples.py`` reads it).
"""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import grpc
import numpy as np
from grpc_tools import protoc  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).parent))
from _serving import MINILM, client_parser, minilm_server, real_texts

PROTO = Path(__file__).resolve().parent.parent / "proto" / "ssl_serve" / "v1" / "embedding.proto"


def compile_stubs(proto: Path, out: Path) -> tuple[ModuleType, ModuleType]:
    """Generate and import ``embedding_pb2`` and ``embedding_pb2_grpc`` from ``proto``.

    The proto's folder is the include root, so the modules are top-level (``embedding_pb2``)
    and cannot collide with an installed ``ssl_serve`` package.

    Raises:
        RuntimeError: protoc fails.
    """
    include = str(Path(protoc.__file__).parent / "_proto")  # well-known types
    args = ["protoc", f"-I{proto.parent}", f"-I{include}", f"--python_out={out}",
            f"--grpc_python_out={out}", proto.name]  # fmt: skip
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {proto}")
    sys.path.insert(0, str(out))
    stem = proto.stem
    return importlib.import_module(f"{stem}_pb2"), importlib.import_module(f"{stem}_pb2_grpc")


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = client_parser(__doc__.split("\n")[0])
    parser.add_argument("--proto", type=Path, default=PROTO, help="embedding.proto to compile")
    args = parser.parse_args(argv)
    texts = real_texts(16 if args.fast else 200)

    with tempfile.TemporaryDirectory() as out:
        pb2, pb2_grpc = compile_stubs(args.proto, Path(out))
        print(f"compiled {args.proto.name} -> {pb2.__name__}, {pb2_grpc.__name__}")
        with minilm_server(args) as (target, _), grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            stub = pb2_grpc.EmbeddingServiceStub(channel)
            listed = stub.ListModels(pb2.ListModelsRequest(), timeout=30)
            model = stub.GetModel(pb2.GetModelRequest(model_name=MINILM), timeout=30)
            request = pb2.EmbedRequest(
                model_name=MINILM,
                inputs=[pb2.Input(text=t) for t in texts],
                request_id="example-grpc-stub",
            )
            response = stub.Embed(request, timeout=60)
            try:
                stub.Embed(pb2.EmbedRequest(model_name=MINILM, inputs=[]), timeout=30)
                empty_code = "OK"
            except grpc.RpcError as err:
                empty_code = err.code().name
                print(f"empty request -> {empty_code}: {err.details()}")

    print(
        "models:",
        [f"{m.name}/{m.version} ({m.modality}, D={m.embedding_dim})" for m in listed.models],
    )
    emb = np.frombuffer(response.embeddings, dtype="<f4").reshape(tuple(response.shape))
    t = response.timing
    print(
        f"Embed {response.request_id}: {emb.shape}, {response.usage.tokens} tokens, "
        f"{sum(response.truncated)} truncated; queue {t.queue_ms:.1f} ms, tokenise "
        f"{t.preprocess_ms:.1f} ms, inference {t.inference_ms:.1f} ms, total {t.total_ms:.1f} ms"
    )
    if args.save:
        np.save(args.save, emb)
    summary: dict[str, object] = {
        "models": [m.name for m in listed.models],
        "embedding_dim": model.embedding_dim,
        "request_id": response.request_id,
        "shape": list(emb.shape),
        "tokens": response.usage.tokens,
        "truncated": sum(response.truncated),
        "total_ms": t.total_ms,
        "max_norm_error": float(np.abs(np.linalg.norm(emb, axis=1) - 1).max()),
        "empty_request_code": empty_code,
        "ssl_serve_imported": any(m.split(".")[0] == "ssl_serve" for m in sys.modules),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
