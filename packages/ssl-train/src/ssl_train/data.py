"""The training data of a recipe: images in memory, a seeded epoch order, and the view generator."""

from __future__ import annotations

import numpy as np
import torch

from ssl_data import SimCLRView, as_float_images, load_fashion_mnist, normalize
from ssl_train.recipe import Recipe

EXAMPLE_INPUTS = 64


def load_images(recipe: Recipe, split: str | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """The recipe's dataset split as ``(N, H, W) uint8`` images and ``(N,) int64`` labels."""
    images, labels = load_fashion_mnist(split or recipe.data.split, root=recipe.data.root)  # type: ignore[arg-type]
    if recipe.data.limit is not None:
        images, labels = images[: recipe.data.limit], labels[: recipe.data.limit]
    return torch.from_numpy(np.ascontiguousarray(images)), labels


def build_views(recipe: Recipe) -> SimCLRView:
    """The view generator the recipe names."""
    v = recipe.views
    return SimCLRView(
        size=recipe.data.image_size,
        mean=tuple(recipe.data.mean),
        std=tuple(recipe.data.std),
        scale=v.scale,
        ratio=v.ratio,
        flip_p=v.flip_p,
        jitter_p=v.jitter_p,
        brightness=v.brightness,
        contrast=v.contrast,
        seed=recipe.seed,
    )


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
