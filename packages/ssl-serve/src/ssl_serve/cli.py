"""The `ssl-serve` command: serve, embed, classify, models, export, triton-export.

Only `export` needs torch (the `ssl-serve[export]` extra); it is imported when that subcommand
runs, so the other subcommands work on a serving box without torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssl_serve import __version__
from ssl_serve.bundle import FOLDER_NAME, FOLDER_NAME_RULE
from ssl_serve.errors import SslServeError

if TYPE_CHECKING:
    from ssl_serve.client import EmbeddingClient

MIB = 1024 * 1024
# Client subcommands read the bearer token from this variable when --token/--token-file are not
# given (a token on the command line is visible to every user of the machine in `ps`).
TOKEN_ENV = "SSL_SERVE_TOKEN"
_EXPORT_MODULES = {"torch", "onnx", "ssl_models", "safetensors", "yaml", "transformers"}
# `embed` sends FILEs with these extensions as audio (Input.audio), others as images.
AUDIO_SUFFIXES = (".wav", ".flac")


def _serve(args: argparse.Namespace) -> int:
    try:
        from ssl_serve.server import (
            EmbeddingServer,
            ServerConfig,
            read_token_file,
            run_until_signal,
        )
    except ImportError as e:
        if e.name != "onnxruntime":
            raise
        print(f"ssl-serve: error: {e}", file=sys.stderr)  # says which extra to install
        return 1
    from ssl_serve.server.security import check_token

    tokens: tuple[str, ...] = ()
    if args.token is not None:
        tokens = (check_token(args.token),)
    elif args.token_file is not None:
        tokens = read_token_file(args.token_file)
    config = ServerConfig(
        repository=args.repository,
        host=args.host,
        port=args.port,
        intra_op_threads=args.threads,
        device=args.device,
        max_batch_size=args.max_batch_size,
        max_batch_tokens=args.max_batch_tokens,
        max_message_bytes=int(args.max_message_mb * MIB),
        workers=args.workers,
        max_concurrent_rpcs=args.max_concurrent_rpcs,
        max_inputs_per_request=args.max_inputs_per_request,
        max_text_chars=args.max_text_chars,
        grace_s=args.grace_s,
        metrics_port=args.metrics_port,
        max_queue_delay_ms=args.max_queue_delay_ms,
        max_queue_size=args.max_queue_size,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        tokens=tokens,
        reload_interval_s=args.reload_interval_s,
    )
    server = EmbeddingServer(config)
    server.start()

    def on_ready() -> None:
        print(f"ssl-serve listening on {server.address}", flush=True)
        if server.metrics_address is not None:
            print(f"ssl-serve metrics on http://{server.metrics_address}/metrics", flush=True)

    run_until_signal(server, on_ready=on_ready)
    return 0


def _client(args: argparse.Namespace) -> EmbeddingClient:
    """The client of a client subcommand, with its TLS and token options."""
    from ssl_serve.client import EmbeddingClient

    token = args.token
    if token is None and args.token_file is not None:
        from ssl_serve.server.security import read_token_file

        token = read_token_file(args.token_file)[0]
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    try:
        return EmbeddingClient(
            args.target,
            timeout_s=args.timeout_s,
            max_message_bytes=int(args.max_message_mb * MIB),
            tls=args.tls,
            tls_ca=args.tls_ca,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_server_name=args.tls_server_name,
            token=token,
        )
    except (OSError, ValueError) as e:
        raise SslServeError(str(e)) from e


def _embed(args: argparse.Namespace) -> int:
    import numpy as np

    from ssl_serve.errors import RemoteError

    output = _npy_path(args.output)
    texts = _texts(args)
    if texts and args.files:
        print("ssl-serve: error: give image FILEs or --text/--text-file, not both", file=sys.stderr)
        return 2
    if not texts and not args.files:
        print(
            "ssl-serve: error: nothing to embed: give FILEs, --text or --text-file", file=sys.stderr
        )
        return 2
    if texts:
        with _client(args) as client:
            result = client.embed_texts_detailed(
                args.model, texts, version=args.version, batch_size=args.batch_size
            )
        np.save(output, result.embeddings)
        print(
            f"wrote {output}: {result.embeddings.shape} {result.embeddings.dtype} "
            f"({result.tokens} tokens, {int(result.truncated.sum())} texts truncated)"
        )
        return 0
    audio = [Path(f).suffix.lower() in AUDIO_SUFFIXES for f in args.files]
    if any(audio) and not all(audio):
        print("ssl-serve: error: give image FILEs or audio FILEs, not both", file=sys.stderr)
        return 2
    data = [Path(f).read_bytes() for f in args.files]
    with _client(args) as client:
        try:
            if all(audio):
                embeddings = client.embed_audio(
                    args.model, data, version=args.version, batch_size=args.batch_size
                )
            else:
                embeddings = client.embed_images(
                    args.model, data, version=args.version, batch_size=args.batch_size
                )
        except RemoteError as e:
            raise RemoteError(e.code, _name_input_files(e.details, args.files)) from e
    np.save(output, embeddings)
    print(f"wrote {output}: {embeddings.shape} {embeddings.dtype}")
    return 0


def _texts(args: argparse.Namespace) -> list[str]:
    """The texts of ``--text`` (first), then of each ``--text-file`` in order (one per line;
    '-' is stdin).

    Raises:
        SslServeError: A file is not UTF-8 (the line and byte are named) or has no lines.
    """
    texts = list(args.text or [])
    for path in args.text_file or []:
        stdin = str(path) == "-"
        data = sys.stdin.buffer.read() if stdin else path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            raise SslServeError(
                f"{'stdin' if stdin else path}: line {line} is not UTF-8 (byte "
                f"0x{data[e.start]:02x} at offset {e.start}); convert it first, e.g. "
                "iconv -f latin1 -t utf-8"
            ) from None
        # One text per line, as a text-mode file reads it (any newline convention).
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if lines[-1] == "":
            lines.pop()
        if not lines:
            raise SslServeError(f"--text-file {path}: no lines to send")
        texts += lines
    return texts


def _classify(args: argparse.Namespace) -> int:
    import numpy as np

    from ssl_serve.errors import RemoteError

    texts = _texts(args)
    if bool(texts) == bool(args.files):
        print(
            "ssl-serve: error: give image or audio FILEs or --text/--text-file (one of the two)",
            file=sys.stderr,
        )
        return 2
    top_k, version, batch_size = args.top_k, args.version, args.batch_size
    with _client(args) as client:
        if texts:
            result = client.classify_texts(
                args.model, texts, top_k=top_k, version=version, batch_size=batch_size
            )
        else:
            audio = [Path(f).suffix.lower() in AUDIO_SUFFIXES for f in args.files]
            if any(audio) and not all(audio):
                print(
                    "ssl-serve: error: give image FILEs or audio FILEs, not both", file=sys.stderr
                )
                return 2
            data = [Path(f).read_bytes() for f in args.files]
            classify = client.classify_audio if all(audio) else client.classify_images
            try:
                result = classify(
                    args.model, data, top_k=top_k, version=version, batch_size=batch_size
                )
            except RemoteError as e:
                raise RemoteError(e.code, _name_input_files(e.details, args.files)) from e
    key, names = ("text", texts) if texts else ("file", args.files)
    rows = [
        {key: name, "top": [{"label": label, "probability": p} for label, p in top]}
        for name, top in zip(names, result.top_k, strict=True)
    ]
    for row in rows:
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            top = ", ".join(f"{t['label']} {t['probability']:.4f}" for t in row["top"])
            print(f"{row[key]}: {top}")
    if args.output is not None:
        output = _npy_path(args.output)
        np.save(output, result.probabilities)
        print(f"wrote {output}: {result.probabilities.shape} {result.probabilities.dtype}")
    return 0


def _npy_path(output: Path) -> Path:
    """The file ``numpy.save(output, ...)`` writes: ``output`` with ".npy" appended if missing."""
    return output if output.name.endswith(".npy") else output.with_name(output.name + ".npy")


# "input 3: ...", or "request with inputs 4..7: input 1: ..." when the client split the images.
_INPUT_ERROR = re.compile(r"(?:request with inputs (\d+)\.\.\d+: )?input (\d+): (.*)", re.DOTALL)


def _name_input_files(details: str, files: Sequence[str]) -> str:
    """Replace the server's per-request input index in an error message with the file name.

    Args:
        details: A gRPC status message from :meth:`EmbeddingClient.embed_images`, e.g.
            "request with inputs 4..7: input 1: cannot decode image ...".
        files: The files sent, in order.

    Returns:
        E.g. "f5.png (input 5): cannot decode image ..." (input numbered across all files);
        ``details`` unchanged when it names no input or an index out of range.
    """
    m = _INPUT_ERROR.fullmatch(details)
    if m is None:
        return details
    i = int(m.group(1) or 0) + int(m.group(2))
    if i >= len(files):
        return details
    return f"{files[i]} (input {i}): {m.group(3)}"


def _models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        models = client.list_models()
    if args.json:
        print(json.dumps([m.__dict__ for m in models], indent=2))
        return 0
    rows = [("NAME", "VERSION", "MODALITY", "DIM", "READY", "PROVIDER")]
    rows += [
        (
            m.name,
            m.version,
            m.modality,
            str(m.embedding_dim),
            str(m.ready),
            m.execution_providers[0] if m.execution_providers else "-",
        )
        for m in models
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.format == "bundle":
        return _export_bundle(args, args.output or Path(args.repository) / args.name / args.version)
    # --format triton: the same bundle, written to a temporary folder, then laid out as a Triton
    # model-repository entry in --repository (model.onnx byte for byte, config.pbtxt beside it).
    if args.repository is None:
        print(
            "ssl-serve: error: --format triton writes into a Triton model repository: "
            "give --repository DIR (not --output)",
            file=sys.stderr,
        )
        return 2
    from ssl_serve.triton import export_triton

    staging = Path(tempfile.mkdtemp(prefix="ssl-serve-triton-"))
    try:
        status = _export_bundle(args, staging / "bundle")
        if status != 0:
            return status
        for entry in export_triton(
            staging / "bundle",
            args.repository,
            name=args.name,
            version=args.version,
            overwrite=args.overwrite,
        ):
            print(f"wrote Triton entry {entry.model} and {entry.config}")
        return 0
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _export_bundle(args: argparse.Namespace, output: Path) -> int:
    """Export the checkpoint or Hugging Face folder of ``args`` as a bundle in ``output``."""
    try:
        from ssl_serve.export import export_checkpoint, export_hf_model
    except ImportError as e:
        if (e.name or "").split(".")[0] in _EXPORT_MODULES:
            print(
                f"ssl-serve: error: export needs {e.name}, which is not installed; "
                "install ssl-serve[export] (pip install 'ssl-serve[export]')",
                file=sys.stderr,
            )
            return 1
        raise
    if (args.checkpoint is None) == (args.hf_model is None):
        print("ssl-serve: error: give either CHECKPOINT or --hf-model DIR", file=sys.stderr)
        return 2
    if args.hf_model is not None:
        texts = None
        if args.validation_texts is not None:
            lines = args.validation_texts.read_text(encoding="utf-8").splitlines()
            texts = [line for line in lines if line.strip()]
        bundle = export_hf_model(
            args.hf_model,
            output,
            name=args.name,
            version=args.version,
            pooling=args.pooling,
            max_length=args.max_length,
            validation_texts=texts,
            tolerance=args.tolerance,
            opset=args.opset,
            overwrite=args.overwrite,
            optimize=args.optimize,
            quantize=args.quantize,
            int8_min_cosine=args.int8_min_cosine,
            max_seconds=args.max_seconds,
            validation_audio=args.validation_audio,
        )
        v = bundle["validation"]
        p = bundle["preprocessing"]
        if bundle["modality"] == "audio":
            _print_audio_export(bundle, output)
            _print_variants(v)
            return 0
        print(f"exported {bundle['name']}/{bundle['version']} to {output}")
        print(
            f"text model: dim {bundle['embedding_dim']}, pooling {p['pooling']}, max_length "
            f"{p['max_length']} tokens, inputs {[i['name'] for i in bundle['inputs']]}"
        )
        print(
            f"validation on {v['num_inputs']} real texts ({v['num_truncated']} truncated, "
            f"{v['sequence_lengths'][0]}-{v['sequence_lengths'][1]} tokens) at batch sizes "
            f"{v['batch_sizes']}: max_abs_diff={v['max_abs_diff']:.3g} "
            f"min_cosine={v['min_cosine']:.9f} max_norm_error={v['max_norm_error']:.3g} "
            f"tokenizer_mismatches={v['tokenizer_mismatches']} (tolerance {v['tolerance']:g})"
        )
        _print_variants(v)
        return 0
    from ssl_serve.export import export_speech_checkpoint, is_speech_checkpoint

    if is_speech_checkpoint(args.checkpoint):
        if args.optimize or args.quantize is not None:
            print(
                "ssl-serve: error: --optimize/--quantize are not offered for speech checkpoints "
                "yet: export without them",
                file=sys.stderr,
            )
            return 2
        bundle = export_speech_checkpoint(
            args.checkpoint,
            output,
            name=args.name,
            version=args.version,
            max_seconds=args.max_seconds or 30.0,
            validation_audio=args.validation_audio,
            tolerance=args.tolerance,
            opset=args.opset,
            overwrite=args.overwrite,
        )
        _print_audio_export(bundle, output)
        return 0
    bundle = export_checkpoint(
        args.checkpoint,
        output,
        name=args.name,
        version=args.version,
        tolerance=args.tolerance,
        opset=args.opset,
        overwrite=args.overwrite,
        optimize=args.optimize,
        quantize=args.quantize,
        int8_min_cosine=args.int8_min_cosine,
    )
    v = bundle["validation"]
    print(f"exported {bundle['name']}/{bundle['version']} to {output}")
    if bundle["modality"] == "text":
        _print_text_checkpoint_export(bundle)
        return 0
    print(
        f"validation on {v['num_inputs']} real inputs at batch sizes {v['batch_sizes']}: "
        f"max_abs_diff={v['max_abs_diff']:.3g} min_cosine={v['min_cosine']:.9f} "
        f"max_norm_error={v['max_norm_error']:.3g} "
        f"preprocessing_max_abs_diff={v['preprocessing_max_abs_diff']:.3g} "
        f"(tolerance {v['tolerance']:g})"
    )
    _print_classifier(bundle)
    _print_variants(v)
    return 0


def _print_text_checkpoint_export(bundle: dict[str, Any]) -> None:
    """Print the figures of a text run's checkpoint export (``export_text_checkpoint``)."""
    v, p, prov = bundle["validation"], bundle["preprocessing"], bundle["provenance"]
    print(
        f"text checkpoint {prov['checkpoint']} (step {prov['step']}, method {prov['method']}): "
        f"dim {bundle['embedding_dim']}, pooling {p['pooling']}, max_length {p['max_length']} "
        "tokens"
    )
    print(
        f"validation on {v['num_inputs']} real texts ({v['num_truncated']} truncated) at batch "
        f"sizes {v['batch_sizes']}: max_abs_diff={v['max_abs_diff']:.3g} "
        f"min_cosine={v['min_cosine']:.9f}; on the checkpoint's "
        f"{v['example_inputs']['num_inputs']} example inputs: "
        f"max_abs_diff={v['example_inputs']['max_abs_diff']:.3g} (tolerance {v['tolerance']:g})"
    )
    _print_classifier(bundle)
    _print_variants(v)


def _print_audio_export(bundle: dict[str, Any], output: Path) -> None:
    """Print what an audio export wrote and its validation figures."""
    v, p = bundle["validation"], bundle["preprocessing"]
    print(f"exported {bundle['name']}/{bundle['version']} to {output}")
    print(
        f"audio model: dim {bundle['embedding_dim']}, {p['sample_rate']} Hz, max "
        f"{p['max_seconds']:g} s, pooling {p['pooling']} over real frames, waveform "
        f"normalisation {'on' if p['normalize'] else 'off'}"
    )
    print(
        f"validation on {v['num_inputs']} real recordings ({v['clip_seconds'][0]:g}-"
        f"{v['clip_seconds'][1]:g} s, recorded at {v['source_rates']} Hz) at batch "
        f"sizes {v['batch_sizes']}: max_abs_diff={v['max_abs_diff']:.3g} "
        f"min_cosine={v['min_cosine']:.9f} max_norm_error={v['max_norm_error']:.3g} "
        f"(tolerance {v['tolerance']:g})"
    )
    _print_classifier(bundle)


def _print_classifier(bundle: dict[str, Any]) -> None:
    """A classifier bundle's labels and probability validation figures (nothing otherwise)."""
    if "labels" in bundle:
        pv = bundle["validation"]["probabilities"]
        print(
            f"classifier: {len(bundle['labels'])} labels; probabilities vs PyTorch: "
            f"max_abs_diff={pv['max_abs_diff']:.3g} max_sum_error={pv['max_sum_error']:.3g} "
            f"top1_agreement={pv['top1_agreement']:.4f}"
        )


def _print_variants(validation: dict[str, Any]) -> None:
    """Print the optimised / int8 figures of an export's ``validation`` (when made)."""
    if "model" not in validation:
        return
    size = validation["fp32_model_bytes"]
    for key in ("optimized", "int8"):
        f = validation.get(key)
        if f is None:
            continue
        extra = ""
        if key == "int8":
            extra = (
                f", {f['quantized_matmuls']} weight MatMuls in int8, "
                f"{len(f['float_matmuls'])} kept in float"
            )
        print(
            f"{key}: max_abs_diff={f['max_abs_diff']:.3g} min_cosine={f['min_cosine']:.6f} "
            f"max_norm_error={f['max_norm_error']:.3g} vs PyTorch; "
            f"{f['model_bytes'] / MIB:.1f} MiB (fp32 {size / MIB:.1f} MiB){extra}"
        )
    print(f"model.onnx holds the {validation['model']} model")


def _triton_export(args: argparse.Namespace) -> int:
    from ssl_serve.triton import export_triton

    entries = export_triton(
        args.source,
        args.output,
        name=args.name,
        version=args.version,
        max_batch_size=args.max_batch_size,
        max_queue_delay_us=args.max_queue_delay_us,
        overwrite=args.overwrite,
    )
    for entry in entries:
        print(f"wrote {entry.model} and {entry.config}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _folder_name(text: str) -> str:
    """A model name or version for `export`, checked before torch is imported."""
    if not FOLDER_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} {FOLDER_NAME_RULE} (it becomes a folder name)")
    return text


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port, 0-65535, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `ssl-serve` (one subparser per subcommand)."""
    parser = argparse.ArgumentParser(
        prog="ssl-serve",
        description="Serve ONNX embedding bundles over gRPC, call such a server, and export "
        "training checkpoints as bundles.",
    )
    parser.add_argument("--version", action="version", version=f"ssl-serve {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        help="logging level on stderr; DEBUG also logs every request served (default: %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="stderr log lines: text, or json (one object per line: time, level, logger, "
        "message; per-request lines add model, method, code, ms) (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "serve",
        help="serve a model repository over gRPC",
        description="Load every <name>/<version>/ bundle of a model repository, warm it up, "
        "and serve ssl_serve.v1.EmbeddingService, inference.GRPCInferenceService (KServe v2: "
        "raw tensors, tritonclient works), grpc.health.v1 and server reflection. Prints "
        "'ssl-serve listening on HOST:PORT' once serving; SIGTERM/SIGINT drain and stop it.",
    )
    p.add_argument("--repository", type=Path, required=True, help="model repository folder")
    p.add_argument("--host", default="127.0.0.1", help="interface (default: %(default)s)")
    p.add_argument(
        "--port",
        type=_port,
        default=50051,
        help="TCP port; 0 picks a free one (default: %(default)s)",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="onnxruntime intra-op threads per model (default: available CPUs, at most 8)",
    )
    p.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="onnxruntime execution provider for every model: cpu (default; ssl-serve[cpu]) "
        "or cuda (ssl-serve[gpu], CUDA 12 + cuDNN 9); the server refuses to start rather than "
        "fall back to the CPU silently",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=8,
        help="RPC handler threads; each decodes its request, then waits while it is queued or "
        "running, so this also bounds how many requests one batch can merge; further calls "
        "wait inside gRPC up to --max-concurrent-rpcs (default: %(default)s)",
    )
    p.add_argument(
        "--max-batch-size",
        type=_positive_int,
        default=256,
        help="most inputs the dynamic batcher merges from concurrent requests into one "
        "onnxruntime batch; a larger request runs alone, in chunks (default: %(default)s)",
    )
    p.add_argument(
        "--max-batch-tokens",
        type=_positive_int,
        default=8192,
        help="text models: most real tokens merged into one batch and most padded tokens per "
        "onnxruntime run; the texts of a batch are sorted by length and padded per sub-batch "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--max-queue-delay-ms",
        type=_non_negative_float,
        default=2.0,
        help="longest wait, in ms, for more requests to join a batch; the batcher waits only "
        "while more requests for the model are being decoded/tokenised, so a lone request "
        "runs at once; 0 never waits (default: %(default)s)",
    )
    p.add_argument(
        "--max-queue-size",
        type=_positive_int,
        default=64,
        help="most requests waiting in a model version's batch queue; more get "
        "RESOURCE_EXHAUSTED (each waiting request holds one of --workers, so set it below "
        "--workers to shed load per model) (default: %(default)s)",
    )
    p.add_argument(
        "--max-message-mb",
        type=_positive_float,
        default=64.0,
        help="largest request/response message in MiB (default: %(default)s)",
    )
    p.add_argument(
        "--max-concurrent-rpcs",
        type=_positive_int,
        default=64,
        help="RPCs in flight before RESOURCE_EXHAUSTED (default: %(default)s)",
    )
    p.add_argument(
        "--max-inputs-per-request",
        type=_positive_int,
        default=4096,
        help="inputs in one Embed/Classify/ModelInfer request before RESOURCE_EXHAUSTED "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--max-text-chars",
        type=_positive_int,
        default=100_000,
        help="longest text input, in characters, before INVALID_ARGUMENT; a model reads only "
        "its first max_length tokens anyway (default: %(default)s)",
    )
    p.add_argument(
        "--grace-s",
        type=_non_negative_float,
        default=10.0,
        help="seconds in-flight RPCs get to finish on shutdown (default: %(default)s)",
    )
    p.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        help="serve Prometheus metrics over HTTP on this port of --host (0 picks a free one; "
        "prints 'ssl-serve metrics on http://HOST:PORT/metrics'); default: off",
    )
    p.add_argument(
        "--tls-cert",
        type=Path,
        metavar="PEM",
        help="server certificate chain (PEM); with --tls-key the port speaks TLS only",
    )
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="its private key (PEM, unencrypted)")
    p.add_argument(
        "--tls-client-ca",
        type=Path,
        metavar="PEM",
        help="mutual TLS: require client certificates signed by this CA (PEM); needs --tls-cert",
    )
    token = p.add_mutually_exclusive_group()
    token.add_argument(
        "--token",
        help="require 'authorization: Bearer TOKEN' metadata on every RPC (UNAUTHENTICATED "
        "otherwise); grpc.health.v1 stays open for probes. Visible in `ps`: prefer --token-file",
    )
    token.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="as --token, the tokens read from FILE (one per line, # comments; any one is "
        "accepted, so a new token can be added before the old one is removed)",
    )
    p.add_argument(
        "--reload-interval-s",
        type=_positive_float,
        default=None,
        metavar="S",
        help="hot reload: poll the repository every S seconds; a version folder added, "
        "changed (its files' size/mtime/inode) or removed, and unchanged over two polls, is "
        "loaded and warmed beside the one served, then swapped in (or removed) without failing "
        "a request; a bundle that fails to load is logged and skipped (default: off, the "
        "repository is read once at start)",
    )
    p.set_defaults(func=_serve)

    def add_target(p: argparse.ArgumentParser) -> None:
        p.add_argument("--target", required=True, help="server address HOST:PORT")
        p.add_argument(
            "--timeout-s",
            type=_positive_float,
            default=30.0,
            help="per-call deadline (default: %(default)s)",
        )
        p.add_argument(
            "--max-message-mb",
            type=_positive_float,
            default=64.0,
            help="largest message sent or received, in MiB; a larger response fails with "
            "RESOURCE_EXHAUSTED (default: %(default)s, as the server's)",
        )
        p.add_argument(
            "--tls",
            action="store_true",
            help="speak TLS, checking the server certificate against the system CAs (implied "
            "by the other --tls options)",
        )
        p.add_argument(
            "--tls-ca", type=Path, metavar="PEM", help="CA that signed the server certificate"
        )
        p.add_argument(
            "--tls-cert", type=Path, metavar="PEM", help="client certificate (mutual TLS)"
        )
        p.add_argument("--tls-key", type=Path, metavar="PEM", help="client certificate's key")
        p.add_argument(
            "--tls-server-name",
            metavar="NAME",
            help="check the server certificate against NAME instead of the target's host",
        )
        token = p.add_mutually_exclusive_group()
        token.add_argument(
            "--token",
            help=f"bearer token sent on every call (default: ${TOKEN_ENV}; a token on the "
            "command line is visible in `ps`)",
        )
        token.add_argument(
            "--token-file", type=Path, metavar="FILE", help="read the token from FILE's first line"
        )

    p = sub.add_parser(
        "embed",
        help="embed image files or texts with a served model",
        description="Send PNG/JPEG files (or texts, with --text / --text-file) to a server and "
        "save their embeddings, (N, D) float32 in input order, as a .npy file (the path written "
        "is printed, with token and truncation counts for texts). A bad image is reported by "
        "file name.",
    )
    add_target(p)
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("--version", default="", help="model version (default: the highest)")
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=256,
        help="inputs per request (default: %(default)s)",
    )
    p.add_argument(
        "--output",
        type=Path,
        required=True,
        help="output .npy file (.npy is appended when missing, as numpy.save does)",
    )
    p.add_argument(
        "--text",
        action="append",
        metavar="TEXT",
        help="a text to embed (repeatable; these come first, then --text-file's lines)",
    )
    p.add_argument(
        "--text-file",
        type=Path,
        action="append",
        metavar="FILE",
        help="a UTF-8 file of texts, one per line ('-' reads stdin; repeatable, in order)",
    )
    p.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="PNG or JPEG image files, or WAV/FLAC audio files (by extension: .wav, .flac) for "
        "an audio model",
    )
    p.set_defaults(func=_embed)

    p = sub.add_parser(
        "classify",
        help="classify image or audio files or texts with a served classifier model",
        description="Send PNG/JPEG files (WAV/FLAC files to an audio classifier, or texts to a "
        "text classifier) to a server's Classify "
        "RPC (a classifier bundle, exported from an ssl-train finetune checkpoint) and print "
        "each file's (text's) top-k labels "
        "with their probabilities; --output saves the full probabilities, (N, K) float32 in "
        "input order with K = the model's labels, as a .npy file. A model without labels "
        "fails with FAILED_PRECONDITION.",
    )
    add_target(p)
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("--version", default="", help="model version (default: the highest)")
    p.add_argument(
        "--top-k",
        type=_positive_int,
        default=5,
        help="labels printed per file (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=256,
        help="inputs per request (default: %(default)s)",
    )
    p.add_argument(
        "--output",
        type=Path,
        help="save the probabilities as .npy (.npy is appended when missing)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per file (text)")
    p.add_argument(
        "--text",
        action="append",
        metavar="TEXT",
        help="a text to classify (repeatable; these come first, then --text-file's lines)",
    )
    p.add_argument(
        "--text-file",
        type=Path,
        action="append",
        metavar="FILE",
        help="a UTF-8 file of texts to classify, one per line ('-' reads stdin; repeatable, "
        "in order)",
    )
    p.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="PNG or JPEG image files, or WAV/FLAC audio files (by extension: .wav, .flac) for "
        "an audio classifier",
    )
    p.set_defaults(func=_classify)

    p = sub.add_parser(
        "models",
        help="list the models a server holds",
        description="List every model version a server holds (name, version, modality, "
        "embedding dimension, readiness).",
    )
    add_target(p)
    p.add_argument("--json", action="store_true", help="print JSON, bundle.json included")
    p.set_defaults(func=_models)

    p = sub.add_parser(
        "export",
        help="export a training checkpoint or a Hugging Face text model as a bundle "
        "(needs ssl-serve[export])",
        description="Export a checkpoint's encoder (pooled output, L2-normalised in the graph) "
        "to ONNX, validate it with onnxruntime against PyTorch on the checkpoint's real "
        "example inputs, and write model.onnx, bundle.json and recipe.yaml atomically. With "
        "--hf-model DIR, export a local Hugging Face text encoder instead (pooling over real "
        "tokens and L2 normalisation in the graph, dynamic batch and sequence axes), validated "
        "on real texts (WordNet glosses by default), with its tokenizer.json. A speech run's "
        "checkpoint (data.dataset spoken_digits or audio_folder) becomes an audio bundle "
        "(waveform normalisation, mean over real frames and L2 normalisation in the graph), "
        "validated on real recordings (--validation-audio); a fine-tuned speech classifier "
        "(ssl-train finetune of such a run) adds its labels and a probabilities output.",
    )
    p.add_argument(
        "checkpoint",
        type=Path,
        nargs="?",
        help="run folder, its checkpoints/ folder (follows 'latest') or a step folder",
    )
    p.add_argument(
        "--hf-model",
        type=Path,
        help="a local Hugging Face model folder (config.json, weights, tokenizer.json; "
        "sentence-transformers' 1_Pooling/config.json and sentence_bert_config.json are read "
        "when present)",
    )
    p.add_argument(
        "--pooling",
        choices=("mean", "cls", "max"),
        help="text models: pooling over real tokens (default: sentence-transformers' config, "
        "else mean)",
    )
    p.add_argument(
        "--max-length",
        type=_positive_int,
        help="text models: longest sequence in tokens, special tokens counted (default: "
        "sentence_bert_config.json's max_seq_length, else the tokenizer's model_max_length)",
    )
    p.add_argument(
        "--validation-texts",
        type=Path,
        help="text models: a UTF-8 file of real validation texts, one per line (default: "
        "WordNet noun glosses from /usr/share/wordnet)",
    )
    p.add_argument(
        "--max-seconds",
        type=_positive_float,
        help="audio models (wav2vec 2.0 / HuBERT folders, speech checkpoints of ssl-train): "
        "longest clip the server accepts, "
        "in seconds (default: 30)",
    )
    p.add_argument(
        "--validation-audio",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="audio models: real speech files (WAV/FLAC) to validate on (default: Debian's "
        "LibriVox and Asterisk recordings)",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--repository", type=Path, help="write REPOSITORY/NAME/VERSION")
    where.add_argument("--output", type=Path, help="write this bundle folder")
    p.add_argument("--name", required=True, type=_folder_name, help="model name (a folder name)")
    p.add_argument(
        "--version",
        default="1",
        type=_folder_name,
        help="model version (a folder name; default: %(default)s)",
    )
    p.add_argument(
        "--tolerance",
        type=_positive_float,
        default=1e-4,
        help="largest accepted |onnxruntime - PyTorch| (default: %(default)s)",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")
    p.add_argument(
        "--format",
        choices=("bundle", "triton"),
        default="bundle",
        help="bundle: an ssl-serve bundle (default); triton: the same validated bundle laid out "
        "as a Triton model-repository entry in --repository (NAME/VERSION/model.onnx + "
        "NAME/config.pbtxt with dynamic batching; VERSION must be an integer), as "
        "`ssl-serve triton-export` writes it",
    )
    p.add_argument(
        "--optimize",
        action="store_true",
        help="store onnxruntime's offline graph optimisation (extended level, CPU), validated "
        "against PyTorch within --tolerance; figures under validation.optimized",
    )
    p.add_argument(
        "--quantize",
        choices=("int8",),
        help="store a dynamic int8 model (onnxruntime quantize_dynamic), validated against "
        "PyTorch; the MatMuls with the worst activation outliers stay in float until the min "
        "cosine reaches --int8-min-cosine; figures under validation.int8",
    )
    p.add_argument(
        "--int8-min-cosine",
        type=float,
        default=0.99,
        help="smallest accepted cosine similarity of int8 vs PyTorch embeddings "
        "(default: %(default)s)",
    )
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "triton-export",
        help="write a bundle (or every bundle of a repository) as a Triton model-repository entry",
        description="Write TRITON_REPOSITORY/NAME/config.pbtxt (platform onnxruntime_onnx, "
        "inputs/outputs with -1 for dynamic axes, max_batch_size, dynamic batching) and "
        "TRITON_REPOSITORY/NAME/VERSION/model.onnx, a byte-for-byte copy of the bundle's, with "
        "bundle.json (and tokenizer.json) beside it for clients. Needs no torch.",
    )
    p.add_argument(
        "source",
        type=Path,
        help="a bundle folder, or an ssl-serve repository (every NAME/VERSION is exported)",
    )
    p.add_argument("output", type=Path, help="Triton model repository folder")
    p.add_argument("--name", help="Triton model name of a single bundle (default: its name)")
    p.add_argument("--version", help="integer version of a single bundle (default: its version)")
    p.add_argument(
        "--max-batch-size",
        type=_positive_int,
        default=64,
        help="config max_batch_size: largest dynamic batch (default: %(default)s)",
    )
    p.add_argument(
        "--max-queue-delay-us",
        type=_non_negative_int,
        default=1000,
        help="dynamic_batching max_queue_delay_microseconds (default: %(default)s)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing version folders")
    p.set_defaults(func=_triton_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `ssl-serve`; returns the exit status (0 ok, 1 error, 2 usage)."""
    args = build_parser().parse_args(argv)
    if args.log_format == "json":
        from ssl_serve.server.logs import configure_logging

        configure_logging(args.log_level, "json")
    else:
        logging.basicConfig(
            level=args.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    try:
        return int(args.func(args))
    except (SslServeError, FileExistsError, FileNotFoundError) as e:
        print(f"ssl-serve: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
