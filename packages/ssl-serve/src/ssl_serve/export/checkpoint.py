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

MODEL_WEIGHTS = "model.safetensors"
RECIPE = "recipe.yaml"
EXAMPLE_INPUTS = "example_inputs.safetensors"
TRAINER_STATE = "trainer_state.json"
ENCODER_PREFIX = "encoder."


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
    """

    path: Path
    recipe: dict[str, Any]
    recipe_bytes: bytes
    step: int | None
    encoder: torch.nn.Module
    preprocessing: ImagePreprocessing
    pixel_values: np.ndarray
    images: np.ndarray

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
            are listed).
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
    preprocessing = image_preprocessing_from_recipe(recipe, folder / RECIPE)
    encoder = _load_encoder(folder, recipe["encoder"])
    pixel_values, images = _load_examples(folder / EXAMPLE_INPUTS, preprocessing)
    return Checkpoint(
        path=folder,
        recipe=recipe,
        recipe_bytes=recipe_bytes,
        step=_step(folder),
        encoder=encoder,
        preprocessing=preprocessing,
        pixel_values=pixel_values,
        images=images,
    )


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
