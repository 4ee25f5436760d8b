"""Reading a training checkpoint folder (docs/contracts.md) for export: recipe, encoder, examples.

Only safetensors, YAML and JSON are read; nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
import safetensors.torch
import torch
import yaml

import ssl_models
from ssl_serve.bundle import ImagePreprocessing
from ssl_serve.errors import CheckpointError
from ssl_serve.export.onnx_graph import fold_batch_norm

MODEL_WEIGHTS = "model.safetensors"
RECIPE = "recipe.yaml"
EXAMPLE_INPUTS = "example_inputs.safetensors"
TRAINER_STATE = "trainer_state.json"
ENCODER_PREFIX = "encoder."
CLASSIFIER_JSON = "classifier.json"


@dataclass
class ClassifierHead:
    """A fine-tuned classifier's head (``ssl-train finetune``; docs/contracts.md).

    Attributes:
        labels: K class names; ``labels[i]`` names logit i.
        head: ``ssl_models.LinearClassifier`` with the checkpoint's ``head.*`` weights, eval
            mode: ``(B, D) float32`` encoder features -> ``(B, K) float32`` logits.
        weight: ``(K, D) float32`` the head as one affine map, its batch norm folded in.
        bias: ``(K,) float32`` the folded bias.
        meta: The decoded ``classifier.json`` (mode, metrics, source, ...).
    """

    labels: tuple[str, ...]
    head: torch.nn.Module
    weight: torch.Tensor
    bias: torch.Tensor
    meta: dict[str, Any]

    @property
    def provenance(self) -> dict[str, Any]:
        """What a classifier bundle's ``provenance.classifier`` records of ``classifier.json``:
        its ``mode``, ``epoch``, ``metrics`` and ``source``, those present."""
        return {k: self.meta[k] for k in ("mode", "epoch", "metrics", "source") if k in self.meta}


@dataclass
class Checkpoint:
    """What the export needs from one checkpoint folder.

    Attributes:
        path: The step folder, e.g. ``<run>/checkpoints/step-00000500``.
        recipe: The resolved recipe (decoded ``recipe.yaml``).
        recipe_bytes: ``recipe.yaml`` as written, copied into the bundle and hashed.
        step: Training step, from ``trainer_state.json`` or the folder name; None if unknown.
        encoder: The encoder with the checkpoint's weights, in eval mode.
        preprocessing: The image preprocessing the recipe's ``data`` section describes.
        pixel_values: ``(N, C, H, W) float32`` real training images as the encoder saw them.
        images: ``(N, H, W, C) uint8`` the same images before preprocessing.
        classifier: The classifier head of a fine-tuned checkpoint (a folder with
            ``classifier.json``); None for a pretraining checkpoint.
    """

    path: Path
    recipe: dict[str, Any]
    recipe_bytes: bytes
    step: int | None
    encoder: torch.nn.Module
    preprocessing: ImagePreprocessing
    pixel_values: np.ndarray
    images: np.ndarray
    classifier: ClassifierHead | None = None

    @property
    def recipe_sha256(self) -> str:
        """Hex SHA-256 of ``recipe.yaml``'s bytes."""
        return hashlib.sha256(self.recipe_bytes).hexdigest()


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Find the step folder from a run folder, a ``checkpoints/`` folder or a step folder.

    A run folder and a ``checkpoints/`` folder lead to the folder their ``latest`` file names.

    Args:
        path: ``<run>``, ``<run>/checkpoints`` or ``<run>/checkpoints/step-XXXXXXXX``.

    Returns:
        The step folder (it holds ``model.safetensors``).

    Raises:
        CheckpointError: None of the three layouts matches, or ``latest`` names a missing
            folder.
    """
    folder = Path(path)
    if (folder / "checkpoints" / "latest").is_file():
        folder = folder / "checkpoints"
    if (folder / "latest").is_file():
        name = (folder / "latest").read_text(encoding="utf-8").strip()
        if not name or not (folder / name).is_dir():
            raise CheckpointError(
                f"{folder / 'latest'} names {name!r}, which is not a folder in {folder}"
            )
        folder = folder / name
    if not (folder / MODEL_WEIGHTS).is_file():
        raise CheckpointError(
            f"{path} is not a checkpoint: expected a run folder (with checkpoints/latest), a "
            f"checkpoints folder (with latest) or a step folder (with {MODEL_WEIGHTS})"
        )
    return folder


def image_preprocessing_from_recipe(recipe: Mapping[str, Any], source: Path) -> ImagePreprocessing:
    """The bundle preprocessing the recipe's ``data`` section implies (uint8 / 255, mean, std).

    Args:
        recipe: The resolved recipe; reads ``data.image_size`` (int, or [height, width]),
            ``data.channels``, ``data.mean`` and ``data.std``.
        source: File named in errors.

    Raises:
        CheckpointError: A key is missing or malformed.
    """
    data = recipe.get("data")
    try:
        size = data["image_size"]  # type: ignore[index]
        size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        channels = int(data["channels"])  # type: ignore[index]
        mean = tuple(float(v) for v in data["mean"])  # type: ignore[index]
        std = tuple(float(v) for v in data["std"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise CheckpointError(
            f"{source}: data.image_size/channels/mean/std missing or malformed ({e!r}); "
            f"got data = {data!r}"
        ) from e
    if channels not in (1, 3) or len(mean) != channels or len(std) != channels:
        raise CheckpointError(
            f"{source}: data.channels is {channels}, mean has {len(mean)} values and std "
            f"{len(std)}; expected 1 or 3 channels with one mean and std each"
        )
    return ImagePreprocessing(size, channels, "bilinear", 1.0 / 255.0, mean, std)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint folder and rebuild its encoder.

    Args:
        path: A run folder, its ``checkpoints/`` folder or one step folder.

    Returns:
        The checkpoint, encoder in eval mode.

    Raises:
        CheckpointError: A file is missing or malformed, the weights hold no ``encoder.``
            keys, or they do not fit the encoder the recipe builds (missing/unexpected keys
            are listed); for a classifier checkpoint, ``classifier.json`` is malformed or the
            ``head.`` weights do not fit it.
    """
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
    data = recipe.get("data")
    if isinstance(data, dict) and data.get("dataset") in ("wordnet", "fortunes", "text_file"):
        raise CheckpointError(
            f"{folder / RECIPE}: data.dataset {data['dataset']} is a text run; read it with "
            "ssl_serve.export.load_text_checkpoint (export_checkpoint does so itself)"
        )
    if isinstance(data, dict) and data.get("dataset") in ("spoken_digits", "audio_folder"):
        raise CheckpointError(
            f"{folder / RECIPE}: data.dataset {data['dataset']} is a speech run; export it with "
            "ssl_serve.export.export_speech_checkpoint (export_checkpoint does so itself)"
        )
    preprocessing = image_preprocessing_from_recipe(recipe, folder / RECIPE)
    encoder = _load_encoder(folder, recipe["encoder"])
    pixel_values, images = _load_examples(folder / EXAMPLE_INPUTS, preprocessing)
    classifier = None
    if (folder / CLASSIFIER_JSON).is_file():
        classifier = load_classifier_head(folder, int(encoder.output_dim))  # type: ignore[arg-type]
    return Checkpoint(
        path=folder,
        recipe=recipe,
        recipe_bytes=recipe_bytes,
        step=_step(folder),
        encoder=encoder,
        preprocessing=preprocessing,
        pixel_values=pixel_values,
        images=images,
        classifier=classifier,
    )


def load_classifier_head(folder: Path, embedding_dim: int) -> ClassifierHead:
    """Read a fine-tuned checkpoint's ``classifier.json`` and ``head.*`` weights.

    Args:
        folder: The step folder (holds ``classifier.json`` and ``model.safetensors``).
        embedding_dim: D, the encoder's pooled output width.

    Returns:
        The head, its labels and its folded affine form.

    Raises:
        CheckpointError: ``classifier.json`` is not JSON, has a format_version other than 1,
            labels that are not K >= 2 distinct strings, or the ``head.`` weights do not fit a
            ``LinearClassifier(D, K)`` (with batch norm when ``head.batch_norm``).
    """
    file = folder / CLASSIFIER_JSON
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
        labels = meta["labels"]
        head_meta = meta["head"]
        batch_norm = bool(head_meta["batch_norm"])
        prefix = str(head_meta.get("prefix", "head."))
        eps = float(head_meta.get("batch_norm_eps") or 1e-5)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{file}: malformed classifier.json ({e!r})") from e
    if meta.get("format_version") != 1:
        raise CheckpointError(
            f"{file}: format_version is {meta.get('format_version')!r}; this ssl-serve reads 1"
        )
    if (
        not isinstance(labels, list)
        or len(labels) < 2
        or not all(isinstance(x, str) and x for x in labels)
        or len(set(labels)) != len(labels)
    ):
        raise CheckpointError(f"{file}: labels must be >= 2 distinct names, got {labels!r}")
    state = safetensors.torch.load_file(str(folder / MODEL_WEIGHTS))
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    head = ssl_models.LinearClassifier(embedding_dim, len(labels), batch_norm=batch_norm)
    try:
        head.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{folder / MODEL_WEIGHTS}: the {prefix!r} weights do not fit a linear head "
            f"{embedding_dim} -> {len(labels)} classes (batch_norm={batch_norm}): {e}"
        ) from e
    head.eval()
    norm = head.norm if isinstance(head.norm, torch.nn.BatchNorm1d) else None
    if norm is not None:
        norm.eps = eps  # classifier.json's value; BatchNorm1d's default is 1e-5
    weight, bias = fold_batch_norm(
        head.linear.weight.detach(),
        head.linear.bias.detach(),
        None if norm is None else norm.running_mean,
        None if norm is None else norm.running_var,
        eps,
    )
    return ClassifierHead(tuple(labels), head, weight, bias, meta)


def _load_encoder(folder: Path, config: dict[str, Any]) -> torch.nn.Module:
    encoder = ssl_models.build_encoder(config)
    state = safetensors.torch.load_file(str(folder / MODEL_WEIGHTS))
    weights = {
        k[len(ENCODER_PREFIX) :]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)
    }
    if not weights:
        raise CheckpointError(
            f"{folder / MODEL_WEIGHTS} holds no {ENCODER_PREFIX!r} keys; found e.g. "
            f"{sorted(state)[:5]}"
        )
    try:
        encoder.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        # torch lists every missing, unexpected and mis-shaped key; the first few say enough.
        lines = str(e).splitlines()
        more = [f"... ({len(lines) - 8} more lines)"] if len(lines) > 8 else []
        detail = "\n".join(lines[:8] + more)
        raise CheckpointError(
            f"{folder / MODEL_WEIGHTS} does not fit encoder {config!r}: {detail}"
        ) from e
    if not isinstance(getattr(encoder, "output_dim", None), int):
        raise CheckpointError(f"encoder {config!r} has no integer output_dim")
    return encoder.eval()


def _load_examples(file: Path, prep: ImagePreprocessing) -> tuple[np.ndarray, np.ndarray]:
    tensors = safetensors.numpy.load_file(str(file))
    for key in ("pixel_values", "images"):
        if key not in tensors:
            raise CheckpointError(f"{file} lacks {key!r}; it holds {sorted(tensors)}")
    pixel_values, images = tensors["pixel_values"], tensors["images"]
    height, width = prep.image_size
    n = len(pixel_values)
    expected = {
        "pixel_values": ((n, prep.channels, height, width), np.float32),
        "images": ((n, height, width, prep.channels), np.uint8),
    }
    for key, array in (("pixel_values", pixel_values), ("images", images)):
        shape, dtype = expected[key]
        if array.shape != shape or array.dtype != dtype or n == 0:
            raise CheckpointError(
                f"{file}: {key!r} is {array.dtype} {array.shape}; the recipe needs "
                f"{np.dtype(dtype).name} {shape} with N >= 1"
            )
    return pixel_values, images


def _step(folder: Path) -> int | None:
    state_file = folder / TRAINER_STATE
    if state_file.is_file():
        try:
            step = json.loads(state_file.read_text(encoding="utf-8")).get("step")
            if isinstance(step, int):
                return step
        except (json.JSONDecodeError, AttributeError):
            pass
    match = re.fullmatch(r"step-(\d+)", folder.name)
    return int(match.group(1)) if match else None
