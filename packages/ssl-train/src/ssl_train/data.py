"""The training data of a recipe: images in memory, a seeded epoch order, and the view generator."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ssl_data import as_float_images, load_fashion_mnist, normalize
from ssl_data.policies import RandAugment, TrivialAugment
from ssl_data.views import (
    BarlowTwinsView,
    BYOLView,
    JigsawView,
    MaskedPatchView,
    MoCoV2View,
    MultiCropView,
    RotationView,
    SimCLRView,
    VICRegView,
)
from ssl_train.recipe import Recipe

EXAMPLE_INPUTS = 64


def load_images(recipe: Recipe, split: str | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """The recipe's dataset split as ``(N, H, W) uint8`` images and ``(N,) int64`` labels."""
    images, labels = load_fashion_mnist(split or recipe.data.split, root=recipe.data.root)  # type: ignore[arg-type]
    if recipe.data.limit is not None:
        images, labels = images[: recipe.data.limit], labels[: recipe.data.limit]
    return torch.from_numpy(np.ascontiguousarray(images)), labels


VIEWS: dict[str, type] = {
    "simclr": SimCLRView,
    "moco_v2": MoCoV2View,
    "byol": BYOLView,
    "vicreg": VICRegView,
    "barlow_twins": BarlowTwinsView,
    "multi_crop": MultiCropView,
    "masked_patches": MaskedPatchView,
    "rotation": RotationView,
    "jigsaw": JigsawView,
}
POLICIES: dict[str, type] = {"rand_augment": RandAugment, "trivial_augment": TrivialAugment}

ViewGenerator = Callable[[torch.Tensor, np.ndarray, int], Sequence[torch.Tensor]]


def build_views(recipe: Recipe) -> ViewGenerator:
    """The view generator the recipe names, with the data's size, mean and std filled in.

    ``recipe.views`` is ``{"name": ..., **arguments}``; ``policy`` may be
    ``{"name": "rand_augment" | "trivial_augment", **arguments}``. ``size`` defaults to
    ``data.image_size`` for generators whose own default is a fixed size.

    Raises:
        KeyError: Unknown view or policy name (the message lists the known ones).
        TypeError: An argument the generator does not take.
        ValueError: A value the generator rejects.
    """
    kwargs: dict[str, Any] = dict(recipe.views)
    name = kwargs.pop("name", "simclr")
    if name not in VIEWS:
        raise KeyError(f"unknown view generator {name!r}; known: {sorted(VIEWS)}")
    cls = VIEWS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    if isinstance(kwargs.get("policy"), dict):
        policy = dict(kwargs["policy"])
        pname = policy.pop("name", None)
        if pname not in POLICIES:
            raise KeyError(f"unknown policy {pname!r}; known: {sorted(POLICIES)}")
        kwargs["policy"] = POLICIES[pname](**policy)
    defaults = {"mean": tuple(recipe.data.mean), "std": tuple(recipe.data.std), "seed": recipe.seed}
    size_field = fields.get("size")
    if size_field is not None and size_field.default is not None:
        defaults["size"] = recipe.data.image_size
    for key, value in defaults.items():
        if key in fields:
            kwargs.setdefault(key, value)
    generator: ViewGenerator = cls(**kwargs)
    return generator


def preprocess(recipe: Recipe, images: torch.Tensor) -> torch.Tensor:
    """Images as the encoder sees them outside training: resized to ``image_size``, normalised.

    Args:
        images: ``(B, H, W)`` or ``(B, C, H, W)`` uint8.

    Returns:
        ``(B, C, image_size, image_size) float32``.
    """
    x = as_float_images(images)
    size = recipe.data.image_size
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return normalize(x, recipe.data.mean, recipe.data.std)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of one epoch: a permutation of ``range(n)`` fixed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def example_inputs(recipe: Recipe, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Real inputs saved with each checkpoint for export validation (docs/contracts.md)."""
    raw = images[:EXAMPLE_INPUTS]
    hwc = raw.unsqueeze(-1) if raw.ndim == 3 else raw.permute(0, 2, 3, 1)
    return {"pixel_values": preprocess(recipe, raw), "images": hwc.contiguous()}


def labelled_splits(
    recipe: Recipe,
) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
    """The labelled data of online evaluation: a memory bank and held-out queries.

    The bank is the first ``evaluation.bank_size`` images of the train split, the queries the
    first ``evaluation.heldout_size`` of the test split (``data.limit`` applies first, as in
    ``ssl-train evaluate``). Fashion-MNIST's files are already shuffled, so a prefix is a fair
    sample of every class.

    Returns:
        ``(bank (N, H, W) uint8, bank_labels (N,) int64, heldout (M, H, W) uint8,
        heldout_labels (M,) int64)``.
    """
    bank, bank_labels = load_images(recipe, "train")
    heldout, heldout_labels = load_images(recipe, "test")
    n, m = recipe.evaluation.bank_size, recipe.evaluation.heldout_size
    return bank[:n], bank_labels[:n], heldout[:m], heldout_labels[:m]
