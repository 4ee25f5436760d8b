"""Embedding a labelled split with a checkpoint's encoder, in-process."""

from __future__ import annotations

import numpy as np
import torch

from ssl_models import SSLMethod
from ssl_train.data import preprocess
from ssl_train.recipe import Recipe


@torch.no_grad()
def embed_images(
    model: SSLMethod,
    recipe: Recipe,
    images: torch.Tensor,
    batch_size: int = 1024,
    device: torch.device | None = None,
) -> np.ndarray:
    """Pooled encoder features of uint8 images, in eval mode (the mode is restored after).

    Args:
        model: The method, unwrapped (not the DDP module); its ``embed`` gives the encoder's
            output.
        recipe: For the preprocessing (size, mean, std).
        images: ``(N, H, W)`` or ``(N, C, H, W)`` uint8.
        batch_size: Images per forward pass.
        device: Where the model is; default: the device of its first parameter (CPU when it
            has none).

    Returns:
        ``(N, D) float32`` features on the CPU (not normalised).
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        out = [
            model.embed(preprocess(recipe, images[i : i + batch_size]).to(device)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()
