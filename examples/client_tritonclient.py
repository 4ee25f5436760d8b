"""Call ssl-serve with the stock Triton client (``tritonclient.grpc``) over KServe v2.

ssl-serve also serves ``inference.GRPCInferenceService`` (KServe v2 / Open Inference Protocol)
on the same port, so existing KServe v2 clients work unchanged: this example asks whether the
server is live and ready, reads the model's metadata (its input and output tensors), tokenises
real quotes itself with the bundle's ``tokenizer.json`` (Hugging Face ``tokenizers``; KServe v2
carries raw tensors, so the client pads and truncates as ``bundle.json`` says) and sends
``input_ids`` / ``attention_mask`` / ``token_type_ids`` as INT64 tensors; the ``embedding``
output comes back FP32 ``[B, 384]``.

Only ``tritonclient[grpc]``, ``tokenizers`` and numpy are imported (no ``ssl_*`` package); the
server is started with the ``ssl-serve`` CLI on a MiniLM bundle exported with ``ssl-serve
export --hf-model`` (or pass ``--repository`` / ``--server``; with ``--server`` the client needs
``--repository`` too, for the tokenizer). Run::

    ./dev run python examples/client_tritonclient.py [--fast] [--repository DIR]

The last line printed is a JSON summary (the test in ``tests/test_examples.py`` reads it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton  # type: ignore[import-untyped]
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from _serving import MINILM, client_parser, minilm_server, real_texts


def tokenize(bundle: Path, texts: list[str]) -> dict[str, np.ndarray]:
    """The model's input tensors for ``texts``, as ``bundle.json``'s preprocessing says.

    Returns:
        ``input_ids``, ``attention_mask``, ``token_type_ids``: each ``(B, L) int64``, right-
        padded with ``pad_id`` to the longest text, truncated at ``max_length`` tokens (special
        tokens counted).
    """
    pre = json.loads((bundle / "bundle.json").read_text())["preprocessing"]
    tokenizer = Tokenizer.from_file(str(bundle / pre["tokenizer"]))
    tokenizer.enable_truncation(pre["max_length"])
    tokenizer.enable_padding(pad_id=pre["pad_id"])
    encodings = tokenizer.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = client_parser(__doc__.split("\n")[0]).parse_args(argv)
    texts = real_texts(16 if args.fast else 200)

    with minilm_server(args) as (target, bundle):
        if bundle is None:
            raise SystemExit("--server needs --repository too (the client reads tokenizer.json)")
        client = triton.InferenceServerClient(url=target)
        live, ready = client.is_server_live(), client.is_server_ready()
        server = client.get_server_metadata()
        meta = client.get_model_metadata(MINILM)
        print(f"server {server.name} {server.version}: live={live} ready={ready}")
        print(f"model {meta.name} versions {list(meta.versions)} on {meta.platform}")
        for t in [*meta.inputs, *meta.outputs]:
            print(f"  {t.name}: {t.datatype} {list(t.shape)}")

        tensors = tokenize(bundle, texts)
        names = {t.name for t in meta.inputs}
        inputs = []
        for name, array in tensors.items():
            if name in names:  # token_type_ids only when the graph has it
                inputs.append(triton.InferInput(name, list(array.shape), "INT64"))
                inputs[-1].set_data_from_numpy(array)
        response = client.infer(MINILM, inputs, outputs=[triton.InferRequestedOutput("embedding")])
        emb = response.as_numpy("embedding")
        client.close()

    print(f"embedded {len(texts)} quotes over KServe v2: {emb.shape} {emb.dtype}")
    if args.save:
        np.save(args.save, emb)
    summary: dict[str, object] = {
        "live": live,
        "ready": ready,
        "server": server.name,
        "platform": meta.platform,
        "inputs": {t.name: [t.datatype, list(t.shape)] for t in meta.inputs},
        "outputs": {t.name: [t.datatype, list(t.shape)] for t in meta.outputs},
        "shape": list(emb.shape),
        "dtype": str(emb.dtype),
        "max_norm_error": float(np.abs(np.linalg.norm(emb, axis=1) - 1).max()),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
