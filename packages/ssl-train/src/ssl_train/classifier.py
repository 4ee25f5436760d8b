"""A pretrained encoder with a linear classifier head, and its checkpoint folder.

Layout (docs/contracts.md, "Classifier checkpoint"): ``<run>/checkpoints/step-XXXXXXXX/`` with
``model.safetensors`` (``encoder.*`` and ``head.*``), ``classifier.json`` (labels, head, metrics,
provenance), ``recipe.yaml`` (the encoder's pretraining recipe), ``finetune.yaml`` and
``example_inputs.safetensors`` (plus ``tokenizer.json`` for a text encoder), and ``<run>/checkpoints/latest`` naming the newest (best) one.
The encoder part has the same keys and recipe as a pretraining checkpoint, so everything that
reads those (``ssl-serve export``) reads this folder too.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import ssl_models
from ssl_train.checkpoint import resolve_checkpoint
from ssl_train.errors import CheckpointError, SslTrainError

CLASSIFIER_JSON = "classifier.json"
FORMAT_VERSION = 1


class EncoderClassifier(nn.Module):
    """``head(encoder(*inputs))``: class logits from images or token ids.

    Args:
        encoder: A backbone with an integer ``output_dim`` (``ssl_models.build_encoder``).
        num_classes: C (>= 2).
        batch_norm: A parameter-free ``BatchNorm1d`` on the features before the linear layer
            (MAE's linear probe, arXiv:2111.06377 appendix A.2).

    Shape:
        ``(B, C_in, H, W) float32`` (images) or ``input_ids, attention_mask (B, L) int64``
        (text encoders) -> ``(B, num_classes) float32`` logits.

    Raises:
        ValueError: The encoder has no integer ``output_dim``, or ``num_classes`` < 2.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, batch_norm: bool = True) -> None:
        super().__init__()
        dim = getattr(encoder, "output_dim", None)
        if not isinstance(dim, int):
            raise ValueError(f"encoder {type(encoder).__name__} has no integer output_dim")
        self.encoder = encoder
        self.head = ssl_models.LinearClassifier(dim, num_classes, batch_norm=batch_norm)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.encoder(*inputs))
        return logits


def versions() -> dict[str, str]:
    """Versions of the packages that made a checkpoint (provenance)."""
    out: dict[str, str] = {"torch": str(torch.__version__)}
    for dist in ("ssl-train", "ssl-models", "ssl-data"):
        try:
            out[dist.replace("-", "_")] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist.replace("-", "_")] = "unknown"
    return out


def save_classifier_checkpoint(
    run_dir: str | Path,
    *,
    model: EncoderClassifier,
    step: int,
    labels: Sequence[str],
    info: dict[str, Any],
    encoder_recipe_yaml: str,
    finetune_recipe_yaml: str,
    example_inputs: dict[str, torch.Tensor],
    files: Mapping[str, Path] | None = None,
) -> Path:
    """Write one classifier checkpoint atomically, point ``latest`` at it, delete the older ones.

    Args:
        run_dir: The fine-tuning run folder.
        model: The classifier (weights saved from its state dict, on the CPU).
        step: Optimiser steps so far (names the folder).
        labels: Class names, index i naming logit i.
        info: More fields for ``classifier.json`` (mode, epoch, metrics, source).
        encoder_recipe_yaml: The encoder's resolved pretraining recipe.
        finetune_recipe_yaml: The resolved fine-tuning recipe.
        example_inputs: ``pixel_values`` and ``images`` (``input_ids`` and ``attention_mask``
            for text) as in a pretraining checkpoint.
        files: Files copied into the folder under the given names (a text run's
            ``tokenizer.json``, so the folder is complete on its own).

    Returns:
        The new checkpoint folder.
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    final = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    tmp.chmod(0o755)
    head = model.head
    meta = {
        "format_version": FORMAT_VERSION,
        "num_classes": head.num_classes,
        "labels": list(labels),
        "embedding_dim": head.input_dim,
        "encoder_prefix": "encoder.",
        "head": {
            "prefix": "head.",
            "batch_norm": isinstance(head.norm, nn.BatchNorm1d),
            "batch_norm_eps": getattr(head.norm, "eps", None),
        },
        "step": step,
        **info,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": versions(),
    }
    try:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"))
        (tmp / CLASSIFIER_JSON).write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "recipe.yaml").write_text(encoder_recipe_yaml)
        (tmp / "finetune.yaml").write_text(finetune_recipe_yaml)
        save_file({k: v.contiguous() for k, v in example_inputs.items()},
                  str(tmp / "example_inputs.safetensors"))  # fmt: skip
        for file_name, file_path in (files or {}).items():
            shutil.copyfile(file_path, tmp / file_name)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer = root / ".latest.tmp"
    pointer.write_text(name + "\n")
    os.replace(pointer, root / "latest")
    for old in root.glob("step-*"):
        if old != final and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_classifier(path: str | Path) -> tuple[EncoderClassifier, dict[str, Any]]:
    """Rebuild a classifier from its checkpoint (run folder or step folder), in eval mode.

    Returns:
        The classifier and its ``classifier.json`` metadata.

    Raises:
        CheckpointError: A file is missing or corrupt, it is not a classifier checkpoint, or the
            weights do not fit (the message names the file).
    """
    folder = resolve_checkpoint(path)
    try:
        meta = json.loads((folder / CLASSIFIER_JSON).read_text())
        recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
        weights = load_file(str(folder / "model.safetensors"))
    except FileNotFoundError as err:
        raise CheckpointError(
            f"{folder}: not a classifier checkpoint (missing {Path(err.filename).name}); "
            "make one with ssl-train finetune"
        ) from None
    except (OSError, ValueError, yaml.YAMLError, SafetensorError) as err:
        raise CheckpointError(f"{folder}: corrupt classifier checkpoint ({err})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{folder / CLASSIFIER_JSON}: format_version {meta.get('format_version')!r}, "
            f"this ssl-train reads {FORMAT_VERSION}"
        )
    encoder = _encoder(folder, recipe)
    model = EncoderClassifier(encoder, int(meta["num_classes"]), bool(meta["head"]["batch_norm"]))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{folder}/model.safetensors does not fit: missing {missing}, unexpected {unexpected}"
        )
    return model.eval(), meta


def _encoder(folder: Path, recipe: dict[str, Any]) -> nn.Module:
    """The encoder a checkpoint's recipe builds; a text one with its tokenizer's vocabulary and
    its method's pooling, as pretraining built it."""
    from ssl_train.recipe import TEXT_DATASETS, recipe_from_dict

    if (recipe.get("data") or {}).get("dataset") not in TEXT_DATASETS:
        return ssl_models.build_encoder(recipe["encoder"])
    from ssl_train.text_data import run_tokenizer
    from ssl_train.trainer import build_model

    try:
        tokenizer = run_tokenizer(folder)
    except SslTrainError as err:
        raise CheckpointError(str(err)) from None
    return build_model(recipe_from_dict(recipe), tokenizer.get_vocab_size()).encoder
