"""`export_text_checkpoint`: a text run's checkpoint (``ssl-train pretrain`` on ``wordnet``,
``fortunes`` or ``text_file``, or ``ssl-train finetune`` of such a run) to a text bundle.

The encoder is rebuilt from the checkpoint's own recipe and weights (any step folder, not only
the run's final ``hf/`` folder), with the pooling the method trained with, and tokenised by the
run's ``tokenizer.json``. Only safetensors, YAML and JSON are read; nothing is unpickled.
"""

from __future__ import annotations

import datetime as dt
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import safetensors.numpy
import safetensors.torch
import torch
import torch.nn.functional as F
import yaml
from safetensors import SafetensorError
from torch import nn

import ssl_models
from ssl_serve.bundle import (
    MODEL_FILE,
    POOLING_MODES,
    PROBABILITIES_OUTPUT,
    RECIPE_FILE,
    TOKENIZER_FILE,
    Bundle,
    TensorSpec,
    TextPreprocessing,
    check_name_and_version,
    write_bundle,
)
from ssl_serve.errors import CheckpointError, ExportValidationError, InvalidInputError
from ssl_serve.export.checkpoint import (
    CLASSIFIER_JSON,
    ENCODER_PREFIX,
    EXAMPLE_INPUTS,
    MODEL_WEIGHTS,
    RECIPE,
    ClassifierHead,
    _step,
    load_classifier_head,
    resolve_checkpoint_dir,
)
from ssl_serve.export.onnx_graph import NORM_EPS, OUTPUT_NAME
from ssl_serve.export.validate import (
    compare_embeddings,
    compare_probabilities,
    pytorch_text_embeddings,
    validate_text_export,
)
from ssl_serve.export.variants import INT8_MIN_COSINE, make_variants
from ssl_serve.preprocess.text import TextTokenizer, length_sorted_batches, pad_sequences
from ssl_serve.runtime import OnnxTextEmbedder

#: ``data.dataset`` values of ssl-train's text recipes (``ssl_train.recipe.TEXT_DATASETS``).
TEXT_DATASETS = ("wordnet", "fortunes", "text_file")
TEXT_INPUT_NAMES = ("input_ids", "attention_mask")


def is_text_recipe(recipe: Mapping[str, Any]) -> bool:
    """Whether a decoded ``recipe.yaml`` trains on a text dataset (:data:`TEXT_DATASETS`)."""
    data = recipe.get("data")
    return isinstance(data, Mapping) and data.get("dataset") in TEXT_DATASETS


def is_text_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` (run, ``checkpoints/`` or step folder) holds a text run's checkpoint.

    False when the folder is no checkpoint or its recipe cannot be read (the image export then
    reports what is wrong).
    """
    try:
        folder = resolve_checkpoint_dir(path)
        recipe = yaml.safe_load((folder / RECIPE).read_bytes())
    except (CheckpointError, OSError, yaml.YAMLError):
        return False
    return isinstance(recipe, dict) and is_text_recipe(recipe)


def text_encoder_config(recipe: Mapping[str, Any], vocab_size: int) -> dict[str, Any]:
    """The encoder config a text run built: ``encoder`` with the tokenizer's ``vocab_size`` and
    the method's ``pooling`` (ssl-models' text methods write it onto the encoder).

    Args:
        recipe: The decoded ``recipe.yaml``.
        vocab_size: Tokens in the run's tokenizer.

    Raises:
        CheckpointError: ``encoder.vocab_size`` is set and differs from ``vocab_size``.
    """
    config = dict(recipe["encoder"])
    given = config.setdefault("vocab_size", vocab_size)
    if given != vocab_size:
        raise CheckpointError(
            f"recipe encoder.vocab_size={given} but the run's tokenizer has {vocab_size} tokens"
        )
    method = recipe.get("method")
    pooling = method.get("pooling") if isinstance(method, Mapping) else None
    if pooling is not None:
        config["pooling"] = pooling
    return config


class TextCheckpointModel(nn.Module):
    """A text run's encoder as a text bundle serves it: pooled over real tokens, L2-normalised,
    with an optional classifier head (softmax inside the graph).

    Args:
        encoder: An ssl-models text encoder (``BertEncoder``, ``GPT2Decoder``, ...): ``(B, L)
            int64`` ids and mask -> pooled ``(B, D) float32`` features.
        head: ``(K, D) weight, (K,) bias`` of a fine-tuned head (batch norm folded in); None for
            an embedding model.
        eps: Lower bound on the norm divided by.

    Shape:
        Inputs ``input_ids``, ``attention_mask`` ``(B, L) int64`` (right padding, as the server
        pads); outputs ``embedding (B, D) float32`` of unit norm, and with a head
        ``probabilities (B, K) float32``.
    """

    uses_token_type_ids = False
    input_names = TEXT_INPUT_NAMES

    def __init__(
        self,
        encoder: nn.Module,
        head: tuple[torch.Tensor, torch.Tensor] | None = None,
        eps: float = NORM_EPS,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.eps = eps
        self.with_head = head is not None
        if head is not None:
            self.register_buffer("head_weight", head[0].detach().float().clone())
            self.register_buffer("head_bias", head[1].detach().float().clone())

    @property
    def output_names(self) -> tuple[str, ...]:
        """Graph outputs, in the order :meth:`forward` returns them."""
        return (OUTPUT_NAME, PROBABILITIES_OUTPUT) if self.with_head else (OUTPUT_NAME,)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B, D) float32`` unit-norm embeddings."""
        features = self.encoder(input_ids, attention_mask)
        return F.normalize(features, p=2.0, dim=1, eps=self.eps)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        # token_type_ids is accepted (validate.pytorch_text_embeddings passes it) and unused.
        features = self.encoder(input_ids, attention_mask)
        embedding = F.normalize(features, p=2.0, dim=1, eps=self.eps)
        if not self.with_head:
            return embedding
        logits = features @ self.head_weight.T + self.head_bias
        return embedding, torch.softmax(logits, dim=1)


class RightPaddedRecurrent(nn.Module):
    """The ONNX-exportable twin of ssl-models' ``RecurrentEncoder`` (ELMo-style biLM runs), for
    right-padded batches (as the server and the trainer pad), sharing its weights.

    The encoder itself packs each row (``pack_padded_sequence``) and orders tokens with a
    stable sort, neither of which the ONNX exporter takes. With right padding neither is
    needed: the forward stack reads the real tokens before any padding, and the backward stack
    reads each row's real tokens reversed (an index computed from the length, its own
    inverse), padding after them. States at padding are zeroed as the encoder does; pooling is
    the encoder's. Validation compares the exported graph with the encoder itself.

    Args:
        encoder: A ``ssl_models.text.RecurrentEncoder`` in eval mode.

    Shape:
        ``input_ids (B, L) int64``, ``attention_mask (B, L) int64`` (right padding) ->
        ``(B, output_dim) float32``.

    Reference: Peters et al., "Deep contextualized word representations", arXiv:1802.05365.
    """

    def __init__(self, encoder: ssl_models.text.RecurrentEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.output_dim = encoder.output_dim
        self.pooling = encoder.pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        x = enc.embedding(input_ids)
        states, _ = enc.forward_rnn(x)
        if enc.backward_rnn is not None:
            lengths = attention_mask.long().sum(dim=1, keepdim=True)
            pos = torch.ones_like(input_ids).cumsum(dim=1) - 1
            order = torch.where(pos < lengths, lengths - 1 - pos, pos).unsqueeze(-1)
            bwd, _ = enc.backward_rnn(x.gather(1, order.expand_as(x)))
            bwd = bwd.gather(1, order.expand(-1, -1, bwd.shape[-1]))
            states = torch.cat([states, bwd], dim=-1)
        states = states * attention_mask.unsqueeze(-1).to(states.dtype)
        return ssl_models.text.pool_tokens(states, attention_mask.bool(), enc.pooling)


def exportable_encoder(encoder: nn.Module) -> nn.Module:
    """``encoder``, or its ONNX-exportable twin (:class:`RightPaddedRecurrent` for a recurrent
    encoder)."""
    if isinstance(encoder, ssl_models.text.RecurrentEncoder):
        return RightPaddedRecurrent(encoder).eval()
    return encoder


class _EmbeddingOnly(nn.Module):
    """The embedding output of a :class:`TextCheckpointModel` (what text validation compares)."""

    uses_token_type_ids = False

    def __init__(self, model: TextCheckpointModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.model.embed(input_ids, attention_mask)


@dataclass
class TextCheckpoint:
    """What the export needs from a text run's checkpoint folder.

    Attributes:
        path: The step folder.
        recipe: The decoded ``recipe.yaml``.
        recipe_bytes: ``recipe.yaml`` as written (copied into the bundle and hashed).
        step: Training step; None if unknown.
        encoder: The encoder with this checkpoint's ``encoder.`` weights, eval mode.
        encoder_config: The config it was built from (``vocab_size`` and pooling filled in).
        tokenizer_path: The run's ``tokenizer.json`` (step folder, else its run folder).
        max_length: ``data.max_length`` (tokens, special tokens counted).
        pooling: The encoder's pooling ("mean", "cls" or "max").
        pad_id: The tokenizer's padding id.
        input_ids: ``(N, L) int64`` the checkpoint's real example inputs (right-padded).
        attention_mask: ``(N, L) int64``.
        classifier: The head of a fine-tuned checkpoint (``classifier.json``); None otherwise.
    """

    path: Path
    recipe: dict[str, Any]
    recipe_bytes: bytes
    step: int | None
    encoder: nn.Module
    encoder_config: dict[str, Any]
    tokenizer_path: Path
    max_length: int
    pooling: str
    pad_id: int
    input_ids: np.ndarray
    attention_mask: np.ndarray
    classifier: ClassifierHead | None = None

    @property
    def recipe_sha256(self) -> str:
        """Hex SHA-256 of ``recipe.yaml``'s bytes."""
        import hashlib

        return hashlib.sha256(self.recipe_bytes).hexdigest()


def find_run_tokenizer(folder: Path) -> Path:
    """The ``tokenizer.json`` of a text checkpoint: in the step folder, else in its run folder.

    Raises:
        CheckpointError: Neither holds one.
    """
    for candidate in (folder, folder.parent.parent):
        if (candidate / TOKENIZER_FILE).is_file():
            return candidate / TOKENIZER_FILE
    raise CheckpointError(
        f"no {TOKENIZER_FILE} in {folder} or its run folder {folder.parent.parent}: a text run "
        "saves its tokenizer there"
    )


def load_text_checkpoint(path: str | Path) -> TextCheckpoint:
    """Read a text run's checkpoint folder and rebuild its encoder from its own weights.

    Args:
        path: A run folder, its ``checkpoints/`` folder or one step folder.

    Returns:
        The checkpoint, encoder in eval mode.

    Raises:
        CheckpointError: A file is missing or malformed (the message names it), the weights
            hold no ``encoder.`` keys or do not fit the encoder the recipe builds, the pooling
            is not one a bundle offers, or ``classifier.json`` / the ``head.`` weights are bad.
    """
    from tokenizers import Tokenizer

    folder = resolve_checkpoint_dir(path)
    for name in (RECIPE, EXAMPLE_INPUTS):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder} lacks {name} (see docs/contracts.md)")
    recipe_bytes = (folder / RECIPE).read_bytes()
    try:
        recipe = yaml.safe_load(recipe_bytes)
    except yaml.YAMLError as e:
        raise CheckpointError(f"{folder / RECIPE}: not valid YAML: {e}") from e
    if not isinstance(recipe, dict) or not isinstance(recipe.get("encoder"), dict):
        raise CheckpointError(f"{folder / RECIPE}: needs an 'encoder' mapping with a 'name'")
    if not is_text_recipe(recipe):
        raise CheckpointError(
            f"{folder / RECIPE}: data.dataset is {recipe.get('data', {}).get('dataset')!r}, "
            f"not a text dataset ({', '.join(TEXT_DATASETS)})"
        )
    max_length = recipe["data"].get("max_length")
    if not isinstance(max_length, int) or max_length < 2:
        raise CheckpointError(f"{folder / RECIPE}: data.max_length is {max_length!r}; need >= 2")
    tokenizer_path = find_run_tokenizer(folder)
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    except Exception as e:  # tokenizers raises its own Exception subclass for any bad file
        raise CheckpointError(f"{tokenizer_path}: not a tokenizers JSON file: {e}") from e
    config = text_encoder_config(recipe, tokenizer.get_vocab_size())
    try:
        encoder = ssl_models.build_encoder(config)
    except (ssl_models.SslModelsError, TypeError, ValueError) as e:
        raise CheckpointError(f"{folder / RECIPE}: cannot build encoder {config!r}: {e}") from e
    pooling = str(getattr(encoder, "pooling", ""))
    if pooling not in POOLING_MODES:
        raise CheckpointError(
            f"{folder / RECIPE}: the encoder pools by {pooling!r}; a text bundle pools by one of "
            f"{list(POOLING_MODES)} (pretrain with method.pooling / encoder.pooling set to one)"
        )
    state = _load_weights(folder / MODEL_WEIGHTS)
    weights = {
        k[len(ENCODER_PREFIX) :]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)
    }
    if not weights:
        raise CheckpointError(
            f"{folder / MODEL_WEIGHTS} holds no {ENCODER_PREFIX!r} keys; found e.g. {sorted(state)[:5]}"
        )
    try:
        encoder.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        lines = str(e).splitlines()
        detail = "\n".join(
            lines[:8] + ([f"... ({len(lines) - 8} more lines)"] if len(lines) > 8 else [])
        )
        raise CheckpointError(
            f"{folder / MODEL_WEIGHTS} does not fit encoder {config!r}: {detail}"
        ) from e
    encoder.eval()
    input_ids, attention_mask = _load_text_examples(folder / EXAMPLE_INPUTS)
    classifier = None
    if (folder / CLASSIFIER_JSON).is_file():
        classifier = load_classifier_head(folder, int(encoder.output_dim))  # type: ignore[arg-type]
    pad = next((i for t in ("[PAD]", "<pad>") if (i := tokenizer.token_to_id(t)) is not None), None)
    return TextCheckpoint(
        path=folder,
        recipe=recipe,
        recipe_bytes=recipe_bytes,
        step=_step(folder),
        encoder=encoder,
        encoder_config=config,
        tokenizer_path=tokenizer_path,
        max_length=max_length,
        pooling=pooling,
        pad_id=int(pad) if pad is not None else 0,
        input_ids=input_ids,
        attention_mask=attention_mask,
        classifier=classifier,
    )


def _load_weights(file: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(file))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from e


def _load_text_examples(file: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        tensors = safetensors.numpy.load_file(str(file))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from e
    for key in TEXT_INPUT_NAMES:
        if key not in tensors:
            raise CheckpointError(
                f"{file} lacks {key!r}; a text checkpoint holds {list(TEXT_INPUT_NAMES)}, this one {sorted(tensors)}"
            )
    ids, mask = tensors["input_ids"], tensors["attention_mask"]
    if ids.ndim != 2 or ids.shape != mask.shape or len(ids) == 0 or ids.dtype.kind != "i":
        raise CheckpointError(
            f"{file}: input_ids {ids.dtype} {ids.shape} and attention_mask {mask.dtype} "
            f"{mask.shape}; need two equal (N, L) integer arrays with N >= 1"
        )
    return ids.astype(np.int64), mask.astype(np.int64)


def export_text_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    *,
    name: str,
    version: str = "1",
    validation_texts: Sequence[str] | None = None,
    tolerance: float = 1e-4,
    opset: int = 17,
    overwrite: bool = False,
    optimize: bool = False,
    quantize: str | None = None,
    int8_min_cosine: float = INT8_MIN_COSINE,
) -> dict[str, Any]:
    """Export a text run's checkpoint as a text bundle (pooling + L2 norm in the graph).

    The encoder is this checkpoint's (:func:`load_text_checkpoint`), pooled as its method
    trained it; ``tokenizer.json`` is the run's, copied verbatim; ``preprocessing.max_length``
    is the recipe's ``data.max_length``. A fine-tuned checkpoint (``classifier.json``) gets a
    second output ``probabilities (batch, K) float32`` and bundle.json ``labels``.

    Validation, all before anything is written (onnxruntime vs PyTorch on the same checkpoint):
    real texts tokenised by the server's tokenizer at several batch sizes
    (:func:`~ssl_serve.export.validate_text_export`; figures at the top of ``validation``),
    the checkpoint's own training example inputs as the trainer padded them
    (``validation.example_inputs``), and for a classifier the probabilities
    (``validation.probabilities``: ``max_abs_diff``, ``max_sum_error``, ``top1_agreement``).

    Args:
        checkpoint: A run folder, its ``checkpoints/`` folder or one step folder.
        output: The bundle folder, e.g. ``<repository>/<name>/<version>``.
        name: Model name (letters, digits, ".", "_", "-").
        version: Model version (same characters).
        validation_texts: Real texts; None: WordNet glosses when installed, else the
            checkpoint's example inputs decoded.
        tolerance: Largest accepted max abs difference (and 1 - min cosine).
        opset: ONNX opset version.
        overwrite: Replace ``output`` when it is an existing bundle folder.
        optimize: Store onnxruntime's offline optimisation (embedding bundles only).
        quantize: "int8" stores a dynamic int8 model (embedding bundles only).
        int8_min_cosine: Smallest accepted int8 cosine similarity with PyTorch.

    Returns:
        The bundle.json contents written.

    Raises:
        InvalidInputError: Bad ``name``/``version``, empty ``validation_texts``, or
            ``optimize``/``quantize`` for a classifier checkpoint.
        FileExistsError: ``output`` exists and may not be replaced.
        CheckpointError: See :func:`load_text_checkpoint`.
        ExportValidationError: onnxruntime disagrees with PyTorch beyond ``tolerance``.
    """
    from ssl_serve.export.bundle_export import (
        _refuse_classifier_variants,
        _version,
        _writable_output,
        _write_atomically,
    )
    from ssl_serve.export.hf_model import WORDNET_NOUNS, wordnet_validation_texts

    check_name_and_version(name, version)
    output = _writable_output(output, overwrite)
    ckpt = load_text_checkpoint(checkpoint)
    classifier = ckpt.classifier
    _refuse_classifier_variants(ckpt.path, classifier, optimize, quantize)
    head = None if classifier is None else (classifier.weight, classifier.bias)
    graph = TextCheckpointModel(ckpt.encoder, head).eval()
    embedding_model = _EmbeddingOnly(graph).eval()
    if validation_texts is not None:
        texts = [t for t in validation_texts if t.strip()]
        if not texts:
            raise InvalidInputError("validation_texts is empty; pass real texts, one per line")
    elif WORDNET_NOUNS.is_file():
        texts = wordnet_validation_texts()
    else:
        texts = _decoded_examples(ckpt)
    prep = TextPreprocessing(TOKENIZER_FILE, ckpt.max_length, ckpt.pooling, ckpt.pad_id)
    tokens = TextTokenizer(ckpt.tokenizer_path, ckpt.max_length).tokenize(texts[:2])
    ids, mask = pad_sequences(tokens.ids if len(texts) > 1 else tokens.ids * 2, ckpt.pad_id)
    example = (torch.from_numpy(ids), torch.from_numpy(mask))
    dim = int(ckpt.encoder.output_dim)  # type: ignore[arg-type]

    def write(tmp: Path) -> dict[str, Any]:
        onnx_path = tmp / MODEL_FILE
        exported = TextCheckpointModel(exportable_encoder(ckpt.encoder), head).eval()
        export_text_graph_onnx(exported, example, onnx_path, opset=opset)
        shutil.copyfile(ckpt.tokenizer_path, tmp / TOKENIZER_FILE)
        validation = validate_text_export(
            onnx_path,
            embedding_model,
            tmp / TOKENIZER_FILE,
            texts,
            prep,
            export_batch=len(example[0]),
            tolerance=tolerance,
        )
        validation["example_inputs"] = _validate_examples(onnx_path, graph, ckpt, tolerance)
        if classifier is not None:
            validation["probabilities"] = validate_text_probabilities(
                onnx_path, graph, tmp / TOKENIZER_FILE, texts, prep, tolerance=tolerance
            )
        if optimize or quantize is not None:
            toks = TextTokenizer(tmp / TOKENIZER_FILE, ckpt.max_length).tokenize(texts)
            reference = pytorch_text_embeddings(embedding_model, toks, ckpt.pad_id)

            def figures(path: Path) -> dict[str, Any]:
                embedder = OnnxTextEmbedder(
                    path, input_names=TEXT_INPUT_NAMES, pad_id=ckpt.pad_id, max_batch_tokens=1 << 30
                )
                return dict(compare_embeddings(reference, embedder.embed(toks.ids)))

            v_ids, v_mask = pad_sequences(toks.ids, ckpt.pad_id)
            validation.update(
                make_variants(
                    onnx_path,
                    optimize=optimize,
                    quantize=quantize,
                    feeds={"input_ids": v_ids, "attention_mask": v_mask},
                    validate=figures,
                    tolerance=tolerance,
                    int8_min_cosine=int8_min_cosine,
                )
            )
        outputs = [TensorSpec(OUTPUT_NAME, "float32", ("batch", dim))]
        labels = None
        extra: dict[str, Any] = {}
        if classifier is not None:
            labels = classifier.labels
            outputs.append(TensorSpec(PROBABILITIES_OUTPUT, "float32", ("batch", len(labels))))
            extra = {"classifier": classifier.provenance}
        bundle = Bundle(
            name=name,
            version=version,
            modality="text",
            inputs=tuple(TensorSpec(n, "int64", ("batch", "sequence")) for n in TEXT_INPUT_NAMES),
            outputs=tuple(outputs),
            embedding_dim=dim,
            normalized=True,
            preprocessing=prep,
            validation=validation,
            provenance={
                "recipe_sha256": ckpt.recipe_sha256,
                "checkpoint": ckpt.path.name,
                "step": ckpt.step,
                "method": (ckpt.recipe.get("method") or {}).get("name"),
                "encoder": ckpt.encoder_config,
                **extra,
                "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "versions": {
                    **{
                        d.replace("-", "_"): _version(d)
                        for d in (
                            "ssl-serve",
                            "ssl-models",
                            "tokenizers",
                            "torch",
                            "onnx",
                            "onnxruntime",
                        )
                    },
                    "opset": opset,
                },
            },
            labels=labels,
        )
        write_bundle(bundle, tmp)
        (tmp / RECIPE_FILE).write_bytes(ckpt.recipe_bytes)
        return bundle.to_dict()

    return _write_atomically(output, write, overwrite=overwrite)


def export_text_graph_onnx(
    model: TextCheckpointModel, example: Sequence[torch.Tensor], path: Path, *, opset: int = 17
) -> None:
    """Export ``model`` (eval mode) with dynamic batch and sequence axes, every output
    ``(batch, ...)`` dynamic, legacy exporter; checks the file.

    Raises:
        onnx.checker.ValidationError: The written model is not valid ONNX.
    """
    model.eval()
    names = list(model.input_names)
    outputs = list(model.output_names)
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in names}
    axes.update({n: {0: "batch"} for n in outputs})
    with warnings.catch_warnings():
        # Tracer warnings (traced shapes become constants): the axes are declared dynamic and
        # validation runs other batch sizes and lengths to prove it.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            tuple(example),
            str(path),
            dynamo=False,
            input_names=names,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path), full_check=True)


def _decoded_examples(ckpt: TextCheckpoint) -> list[str]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(ckpt.tokenizer_path))
    rows = [
        ids[mask.astype(bool)].tolist()
        for ids, mask in zip(ckpt.input_ids, ckpt.attention_mask, strict=True)
    ]
    texts = [t for t in tokenizer.decode_batch(rows, skip_special_tokens=True) if t.strip()]
    if not texts:
        raise CheckpointError(f"{ckpt.path / EXAMPLE_INPUTS}: no example input decodes to text")
    return texts


def _validate_examples(
    onnx_path: Path, graph: TextCheckpointModel, ckpt: TextCheckpoint, tolerance: float
) -> dict[str, Any]:
    """onnxruntime vs PyTorch on the checkpoint's example inputs, padded as in training."""
    with torch.inference_mode():
        reference = graph.embed(
            torch.from_numpy(ckpt.input_ids), torch.from_numpy(ckpt.attention_mask)
        ).numpy()
    embedder = OnnxTextEmbedder(onnx_path, input_names=TEXT_INPUT_NAMES, pad_id=ckpt.pad_id)
    figures = dict(
        compare_embeddings(reference, embedder.embed_padded(ckpt.input_ids, ckpt.attention_mask))
    )
    figures["num_inputs"] = len(ckpt.input_ids)
    if not (figures["max_abs_diff"] <= tolerance and figures["min_cosine"] >= 1 - tolerance):
        raise ExportValidationError(
            f"{onnx_path} failed validation on {ckpt.path / EXAMPLE_INPUTS}: max_abs_diff = "
            f"{figures['max_abs_diff']:.3g}, min_cosine = {figures['min_cosine']:.8f} "
            f"(tolerance {tolerance:g})",
            figures,
        )
    return figures


def validate_text_probabilities(
    onnx_path: Path,
    graph: TextCheckpointModel,
    tokenizer_path: Path,
    texts: Sequence[str],
    preprocessing: TextPreprocessing,
    *,
    tolerance: float = 1e-4,
) -> dict[str, Any]:
    """Check a text classifier bundle's ``probabilities`` against PyTorch on real texts.

    PyTorch runs length-sorted padded sub-batches of 8; onnxruntime runs the server's sub-batches
    at sizes all N, 7 and 1.

    Args:
        onnx_path: The exported ``model.onnx`` (outputs ``embedding``, ``probabilities``).
        graph: The exported module (with a head).
        tokenizer_path: The bundle's ``tokenizer.json``.
        texts: N real texts.
        preprocessing: The bundle's text preprocessing.
        tolerance: Largest accepted max abs difference and row-sum error.

    Returns:
        The figures of :func:`~ssl_serve.export.validate.compare_probabilities`.

    Raises:
        ExportValidationError: See :func:`~ssl_serve.export.validate.compare_probabilities`.
    """
    tokens = TextTokenizer(tokenizer_path, preprocessing.max_length).tokenize(texts)
    lengths = [len(x) for x in tokens.ids]
    reference = np.empty((len(lengths), 0), dtype=np.float64)
    with torch.inference_mode():
        for idx in length_sorted_batches(lengths, max_batch_size=8, max_batch_tokens=1 << 30):
            ids, mask = pad_sequences([tokens.ids[i] for i in idx], preprocessing.pad_id)
            _, probs = graph.eval()(torch.from_numpy(ids), torch.from_numpy(mask))
            if reference.shape[1] == 0:
                reference = np.empty((len(lengths), probs.shape[1]), dtype=np.float64)
            reference[idx] = probs.numpy()
    embedder = OnnxTextEmbedder(
        onnx_path,
        input_names=TEXT_INPUT_NAMES,
        output_name=PROBABILITIES_OUTPUT,
        pad_id=preprocessing.pad_id,
        max_batch_tokens=1 << 30,
    )
    batch_sizes = list(dict.fromkeys((len(texts), min(7, len(texts)), 1)))

    def run_at(size: int) -> np.ndarray:
        embedder.max_batch_size = size
        return embedder.embed(tokens.ids)

    return compare_probabilities(onnx_path, reference, run_at, batch_sizes, tolerance)
