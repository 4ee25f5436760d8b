"""`export_checkpoint`: a training checkpoint to a validated bundle folder, written atomically."""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from ssl_serve.bundle import (
    BUNDLE_FILE,
    MODEL_FILE,
    PROBABILITIES_OUTPUT,
    RECIPE_FILE,
    Bundle,
    TensorSpec,
    check_name_and_version,
    write_bundle,
)
from ssl_serve.errors import InvalidInputError
from ssl_serve.export.checkpoint import Checkpoint, load_checkpoint
from ssl_serve.export.onnx_graph import (
    CLASSIFIER_OUTPUT_NAMES,
    INPUT_NAME,
    OUTPUT_NAME,
    ClassifierModel,
    EmbeddingModel,
    export_onnx,
)
from ssl_serve.export.validate import compare_embeddings, validate_export, validate_probabilities
from ssl_serve.export.variants import INT8_MIN_COSINE, make_variants
from ssl_serve.runtime import OnnxEmbedder


def export_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    *,
    name: str,
    version: str = "1",
    tolerance: float = 1e-4,
    opset: int = 17,
    overwrite: bool = False,
    optimize: bool = False,
    quantize: str | None = None,
    int8_min_cosine: float = INT8_MIN_COSINE,
) -> dict[str, Any]:
    """Export a checkpoint's encoder (pooled output, L2-normalised in the graph) as a bundle.

    A speech run's checkpoint (its recipe's ``data.dataset`` is ``spoken_digits`` or
    ``audio_folder``) becomes an audio bundle through
    :func:`~ssl_serve.export.speech_checkpoint.export_speech_checkpoint` (validated on the
    default real recordings; call that function for other recordings or ``max_seconds``).

    A text run's checkpoint (its recipe's ``data.dataset`` is ``wordnet``, ``fortunes`` or
    ``text_file``) is exported as a text bundle by
    :func:`~ssl_serve.export.text_checkpoint.export_text_checkpoint`.

    A fine-tuned classifier checkpoint (``ssl-train finetune``: the step folder holds
    ``classifier.json``) becomes a classifier bundle: the graph has a second output,
    ``probabilities (batch, K) float32`` (the head, its batch norm folded in, then softmax),
    bundle.json lists the class ``labels``, and ``validation.probabilities`` holds the
    onnxruntime-vs-PyTorch figures of the probabilities (see
    :func:`~ssl_serve.export.validate.validate_probabilities`).

    Reads the checkpoint (docs/contracts.md), rebuilds the encoder with
    ``ssl_models.build_encoder(recipe["encoder"])`` and loads its ``encoder.`` weights
    strictly; exports encoder + L2 normalisation to ONNX with a dynamic batch axis; validates
    onnxruntime against PyTorch on the checkpoint's real example inputs at batch sizes other
    than the export's (all N, 7, 1), and the server's preprocessing of the raw example images
    against the training ``pixel_values``; then writes ``model.onnx``, ``bundle.json`` and
    ``recipe.yaml`` into a hidden temporary folder beside ``output`` and renames it into
    place, so ``output`` is either complete or absent.

    Args:
        checkpoint: A run folder, its ``checkpoints/`` folder (follows ``latest``) or a step
            folder.
        output: The bundle folder to create, e.g. ``<repository>/<name>/<version>``.
        name: Model name recorded in bundle.json (letters, digits, ".", "_", "-").
        version: Model version recorded in bundle.json (same characters).
        tolerance: Largest accepted max abs difference (and 1 - min cosine) between
            onnxruntime and PyTorch embeddings.
        opset: ONNX opset version.
        overwrite: Replace ``output`` when it exists and is a bundle folder (holds
            bundle.json), atomically; otherwise an existing ``output`` is an error.
        optimize: Store onnxruntime's offline graph optimisation of the model, validated
            against PyTorch (see :func:`~ssl_serve.export.variants.make_variants`).
        quantize: "int8" stores a dynamic int8 model (optimised afterwards with
            ``optimize``), validated to a min cosine of ``int8_min_cosine`` against PyTorch.
        int8_min_cosine: Smallest accepted int8 cosine similarity with PyTorch.

    Returns:
        The bundle.json contents written (validation figures under ``"validation"``).

    Raises:
        InvalidInputError: ``name`` or ``version`` is not a valid folder name, or
            ``optimize``/``quantize`` is asked for a classifier checkpoint (its probabilities
            would go unvalidated; not supported yet).
        FileExistsError: ``output`` exists and ``overwrite`` is False, or it exists and is not
            a bundle folder (no bundle.json), which is never replaced.
        CheckpointError: The checkpoint cannot be read or does not fit its encoder.
        ExportValidationError: onnxruntime disagrees with PyTorch beyond ``tolerance``, or the
            recipe's preprocessing does not reproduce the checkpoint's inputs; nothing is
            written then.
    """
    from ssl_serve.export.text_checkpoint import export_text_checkpoint, is_text_checkpoint

    if is_text_checkpoint(checkpoint):
        return export_text_checkpoint(
            checkpoint, output, name=name, version=version, tolerance=tolerance, opset=opset,
            overwrite=overwrite, optimize=optimize, quantize=quantize,
            int8_min_cosine=int8_min_cosine,
        )  # fmt: skip
    check_name_and_version(name, version)
    # Imported here: speech_checkpoint imports this module.
    from ssl_serve.export.speech_checkpoint import export_speech_checkpoint, is_speech_checkpoint

    if is_speech_checkpoint(checkpoint):
        if optimize or quantize is not None:
            raise InvalidInputError(
                "--optimize/--quantize are not offered for speech checkpoints yet: export "
                "without them"
            )
        return export_speech_checkpoint(checkpoint, output, name=name, version=version,
                                        tolerance=tolerance, opset=opset, overwrite=overwrite)  # fmt: skip
    output = _writable_output(output, overwrite)
    ckpt = load_checkpoint(checkpoint)
    classifier = ckpt.classifier
    _refuse_classifier_variants(ckpt.path, classifier, optimize, quantize)
    model = EmbeddingModel(ckpt.encoder).eval()
    graph: torch.nn.Module = model
    output_names: tuple[str, ...] = (OUTPUT_NAME,)
    if classifier is not None:
        graph = ClassifierModel(ckpt.encoder, classifier.weight, classifier.bias).eval()
        output_names = CLASSIFIER_OUTPUT_NAMES
    n = len(ckpt.pixel_values)
    batch_sizes = list(dict.fromkeys((n, min(7, n), 1)))
    export_batch = next(b for b in range(2, n + 3) if b not in batch_sizes)
    # Repeat the real examples when there are fewer than the export batch needs.
    example = torch.from_numpy(ckpt.pixel_values[[i % n for i in range(export_batch)]])

    def write(folder: Path) -> dict[str, Any]:
        onnx_path = folder / MODEL_FILE
        export_onnx(graph, example, onnx_path, opset=opset, output_names=output_names)
        validation = validate_export(
            onnx_path,
            model,
            ckpt.pixel_values,
            ckpt.images,
            ckpt.preprocessing,
            batch_sizes=batch_sizes,
            tolerance=tolerance,
        )
        if classifier is not None:
            validation["probabilities"] = validate_probabilities(
                onnx_path,
                ckpt.encoder,
                classifier.head,
                ckpt.pixel_values,
                batch_sizes=batch_sizes,
                tolerance=tolerance,
            )
        if optimize or quantize is not None:
            with torch.inference_mode():
                reference = model.eval()(torch.from_numpy(ckpt.pixel_values)).numpy()

            def figures(path: Path) -> dict[str, Any]:
                embedder = OnnxEmbedder(path, input_name=INPUT_NAME, output_name=OUTPUT_NAME)
                return dict(compare_embeddings(reference, embedder.embed(ckpt.pixel_values)))

            validation.update(
                make_variants(
                    onnx_path,
                    optimize=optimize,
                    quantize=quantize,
                    feeds={INPUT_NAME: ckpt.pixel_values},
                    validate=figures,
                    tolerance=tolerance,
                    int8_min_cosine=int8_min_cosine,
                )
            )
        bundle = _bundle(ckpt, model.output_dim, name, version, validation, opset)
        write_bundle(bundle, folder)
        (folder / RECIPE_FILE).write_bytes(ckpt.recipe_bytes)
        return bundle.to_dict()

    return _write_atomically(output, write, overwrite=overwrite)


def _bundle(
    ckpt: Checkpoint,
    dim: int,
    name: str,
    version: str,
    validation: dict[str, Any],
    opset: int,
) -> Bundle:
    prep = ckpt.preprocessing
    outputs = [TensorSpec(OUTPUT_NAME, "float32", ("batch", dim))]
    labels = None
    classifier: dict[str, Any] = {}
    if ckpt.classifier is not None:
        labels = ckpt.classifier.labels
        outputs.append(TensorSpec(PROBABILITIES_OUTPUT, "float32", ("batch", len(labels))))
        classifier = {"classifier": ckpt.classifier.provenance}
    return Bundle(
        name=name,
        version=version,
        modality="image",
        inputs=(TensorSpec(INPUT_NAME, "float32", ("batch", prep.channels, *prep.image_size)),),
        outputs=tuple(outputs),
        embedding_dim=dim,
        normalized=True,
        preprocessing=prep,
        validation=validation,
        provenance={
            "recipe_sha256": ckpt.recipe_sha256,
            "checkpoint": ckpt.path.name,
            "step": ckpt.step,
            **classifier,
            "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "versions": {
                # Import names as keys, as in docs/contracts.md.
                **{
                    d.replace("-", "_"): _version(d)
                    for d in ("ssl-serve", "ssl-models", "torch", "onnx", "onnxruntime")
                },
                "opset": opset,
            },
        },
        labels=labels,
    )


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _writable_output(output: str | Path, overwrite: bool) -> Path:
    """``output`` as a Path, once it is free or a bundle folder ``overwrite`` may replace.

    Raises:
        FileExistsError: ``output`` exists and ``overwrite`` is False, or it is not a bundle.
    """
    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(
            f"{output} exists; pass overwrite=True (--overwrite) to replace it, or export "
            "another version beside it (--version)"
        )
    _check_replaceable(output)
    return output


def _refuse_classifier_variants(
    path: Path, classifier: object | None, optimize: bool, quantize: str | None
) -> None:
    """InvalidInputError when a classifier checkpoint asks for --optimize/--quantize."""
    if classifier is not None and (optimize or quantize is not None):
        raise InvalidInputError(
            f"{path} is a classifier checkpoint; --optimize/--quantize validate only "
            "embeddings, so they are not offered for classifier bundles yet: export without them"
        )


def _check_replaceable(output: Path) -> None:
    """Refuse to replace an existing ``output`` that is not a bundle folder (a user's folder)."""
    if output.exists() and not (output / BUNDLE_FILE).is_file():
        kind = "folder" if output.is_dir() else "file"
        raise FileExistsError(
            f"{output} exists and is not a bundle folder (it is a {kind} without {BUNDLE_FILE}); "
            "refusing to replace it even with overwrite=True (--overwrite): pick a new or "
            "bundle folder as the output"
        )


def _write_atomically(
    output: Path, write: Callable[[Path], dict[str, Any]], *, overwrite: bool
) -> dict[str, Any]:
    """Run ``write`` into a hidden folder beside ``output``, then rename it to ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        result = write(tmp)
        if output.exists():
            if not overwrite:
                raise FileExistsError(f"{output} appeared while exporting; not replaced")
            _check_replaceable(output)
            old = output.with_name(f".{output.name}.old-{uuid.uuid4().hex[:8]}")
            output.rename(old)
            try:
                tmp.rename(output)
            except BaseException:
                old.rename(output)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return result
