"""A speech checkpoint (``ssl-train pretrain`` of a ``spoken_digits`` or ``audio_folder``
recipe, or ``ssl-train finetune`` of such a run) to a validated audio bundle.

The checkpoint folder is the same as an image run's (docs/contracts.md); what differs is the
recipe's ``data`` section (a speech dataset, ``sample_rate``) and the encoder (ssl-models'
``SpeechEncoder``). The bundle is :func:`~ssl_serve.export.audio_export.export_speech_encoder`'s
(waveform normalisation, mean over real frames and L2 normalisation in the graph), with the
run's ``recipe.yaml`` inside and its hash, checkpoint and step in the provenance. A fine-tuned
classifier checkpoint (``classifier.json`` and ``head.`` weights beside the encoder's) becomes an
audio classifier bundle: a second output ``probabilities`` and bundle.json ``labels``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ssl_serve.bundle import RECIPE_FILE, check_name_and_version
from ssl_serve.errors import CheckpointError
from ssl_serve.export.audio_export import DEFAULT_MAX_SECONDS, export_speech_encoder
from ssl_serve.export.checkpoint import (
    CLASSIFIER_JSON,
    MODEL_WEIGHTS,
    RECIPE,
    _load_encoder,
    _step,
    load_classifier_head,
    resolve_checkpoint_dir,
)

#: ``data.dataset`` values of ssl-train's speech recipes.
# spoken_words: a CLIP run (spoken word <-> text); its audio tower (`encoder`) is exported.
SPEECH_DATASETS = ("spoken_digits", "audio_folder", "spoken_words")


def _read_recipe(folder: Path) -> tuple[dict[str, Any], bytes]:
    file = folder / RECIPE
    if not file.is_file():
        raise CheckpointError(f"{folder} lacks {RECIPE} (see docs/contracts.md)")
    data = file.read_bytes()
    try:
        recipe = yaml.safe_load(data)
    except yaml.YAMLError as e:
        raise CheckpointError(f"{file}: not valid YAML: {e}") from e
    if not isinstance(recipe, dict) or not isinstance(recipe.get("encoder"), dict):
        raise CheckpointError(f"{file}: needs an 'encoder' mapping with a 'name'")
    return recipe, data


def is_speech_checkpoint(checkpoint: str | Path) -> bool:
    """Whether a checkpoint's recipe trains on a speech dataset (``data.dataset``).

    Args:
        checkpoint: A run folder, its ``checkpoints/`` folder or a step folder.

    Raises:
        CheckpointError: The folder is not a checkpoint, or its recipe is unreadable.
    """
    recipe, _ = _read_recipe(resolve_checkpoint_dir(checkpoint))
    data = recipe.get("data")
    return isinstance(data, dict) and data.get("dataset") in SPEECH_DATASETS


def export_speech_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    *,
    name: str,
    version: str = "1",
    max_seconds: float = DEFAULT_MAX_SECONDS,
    validation_audio: Sequence[str | Path] | None = None,
    tolerance: float = 1e-4,
    opset: int = 17,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export a speech run's encoder (or fine-tuned classifier) as an audio bundle, validated
    on real recordings.

    Rebuilds the encoder from the recipe (``ssl_models.build_encoder(recipe["encoder"])``),
    loads the checkpoint's ``encoder.`` weights strictly, and exports it with
    :func:`~ssl_serve.export.audio_export.export_speech_encoder` at the recipe's
    ``data.sample_rate``: onnxruntime on padded batches against PyTorch on each recording
    alone, the recordings preprocessed as the server does.

    A fine-tuned classifier checkpoint (``ssl-train finetune`` of a speech run: the step folder
    holds ``classifier.json``) becomes an audio classifier bundle: the graph's second output
    ``probabilities (batch, K) float32`` is the softmax of the head (its batch norm folded in)
    on the pooled features before L2 normalisation, as ssl-train applies it; bundle.json lists
    the ``labels`` and ``provenance.classifier`` (mode, epoch, metrics, source);
    ``validation.probabilities`` holds onnxruntime against the checkpoint's own PyTorch head on
    each recording alone (``max_abs_diff``, ``max_sum_error``, ``top1_agreement``), and the
    export fails above ``tolerance``.

    Args:
        checkpoint: A run folder, its ``checkpoints/`` folder (follows ``latest``) or a step
            folder.
        output: The bundle folder to create, e.g. ``<repository>/<name>/<version>``.
        name: Model name (letters, digits, ".", "_", "-").
        version: Model version (same characters).
        max_seconds: Longest clip the server accepts, in seconds.
        validation_audio: Real speech files (WAV/FLAC); None: the default recordings
            (:func:`~ssl_serve.export.audio_export.default_validation_recordings`).
        tolerance: Largest accepted max abs difference (and 1 - min cosine).
        opset: ONNX opset version.
        overwrite: Replace ``output`` when it is an existing bundle folder.

    Returns:
        The bundle.json contents written (``modality: audio``; with ``labels`` for a
        classifier).

    Raises:
        CheckpointError: Not a checkpoint, not a speech recipe, a bad ``data.sample_rate``,
            weights that do not fit the encoder, or a malformed ``classifier.json`` / ``head.``
            weights that do not fit it.
        InvalidInputError, FileExistsError, ExportValidationError: See
            :func:`~ssl_serve.export.audio_export.export_audio_encoder`.
    """
    import hashlib

    check_name_and_version(name, version)
    folder = resolve_checkpoint_dir(checkpoint)
    recipe, recipe_bytes = _read_recipe(folder)
    data = recipe.get("data")
    if not (isinstance(data, dict) and data.get("dataset") in SPEECH_DATASETS):
        dataset = data.get("dataset") if isinstance(data, dict) else None
        raise CheckpointError(
            f"{folder / RECIPE}: data.dataset is {dataset!r}, not a speech dataset "
            f"({', '.join(SPEECH_DATASETS)}); export it with export_checkpoint"
        )
    rate = data.get("sample_rate", 16000)
    if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
        raise CheckpointError(f"{folder / RECIPE}: data.sample_rate must be an integer > 0 Hz")
    encoder = _load_encoder(folder, dict(recipe["encoder"]))
    if not hasattr(encoder, "wav2vec2"):
        raise CheckpointError(
            f"{folder / MODEL_WEIGHTS}: encoder {recipe['encoder'].get('name')!r} is not "
            "ssl-models' speech encoder (wav2vec2)"
        )
    classifier = None
    provenance: dict[str, Any] = {
        "recipe_sha256": hashlib.sha256(recipe_bytes).hexdigest(),
        "checkpoint": folder.name,
        "step": _step(folder),
    }
    if (folder / CLASSIFIER_JSON).is_file():
        classifier = load_classifier_head(folder, int(encoder.output_dim))  # type: ignore[arg-type]
        provenance["classifier"] = classifier.provenance
    return export_speech_encoder(
        encoder,
        output,
        name=name,
        version=version,
        sample_rate=rate,
        max_seconds=max_seconds,
        validation_audio=validation_audio,
        provenance=provenance,
        tolerance=tolerance,
        opset=opset,
        overwrite=overwrite,
        extra_files={RECIPE_FILE: recipe_bytes},
        classifier=classifier,
    )


__all__ = ["SPEECH_DATASETS", "export_speech_checkpoint", "is_speech_checkpoint"]
