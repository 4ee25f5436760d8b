"""Embedding a labelled split with a checkpoint's encoder, in-process."""

from __future__ import annotations

import numpy as np
import torch

from ssl_models import SSLMethod
from ssl_train.data import preprocess
from ssl_train.recipe import Recipe


@torch.no_grad()
def embed_images(
    model: SSLMethod, recipe: Recipe, images: torch.Tensor, batch_size: int = 1024
) -> np.ndarray:
    """Pooled encoder features of uint8 images, in eval mode.

    Args:
        model: The method (its ``embed`` gives the encoder's output).
        recipe: For the preprocessing (size, mean, std).
        images: ``(N, H, W)`` or ``(N, C, H, W)`` uint8.
        batch_size: Images per forward pass.

    Returns:
        ``(N, D) float32`` features (not normalised).
    """
    was_training = model.training
    model.eval()
    out = [
        model.embed(preprocess(recipe, images[i : i + batch_size]))
        for i in range(0, len(images), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out).numpy()
