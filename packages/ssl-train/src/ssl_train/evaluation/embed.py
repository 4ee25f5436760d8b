"""Embedding a labelled split (images or texts) with a checkpoint's encoder, in-process."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tokenizers import Tokenizer

from ssl_models import SSLMethod
from ssl_models.text import TextSSLMethod
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


@torch.no_grad()
def embed_texts(
    model: TextSSLMethod,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 256,
    device: torch.device | None = None,
) -> np.ndarray:
    """Sentence embeddings of texts (the method's ``embed``: pooled over real tokens), in eval
    mode (the mode is restored after).

    Texts are tokenised by ``tokenizer`` (cut to ``max_length`` tokens, special tokens
    included) and batched longest first, right-padded, so little compute goes to padding.

    Args:
        model: A text method, unwrapped.
        tokenizer: The run's tokenizer.
        texts: ``N`` texts.
        max_length: Tokens per text at most (the recipe's ``data.max_length``).
        batch_size: Texts per forward pass.
        device: Where the model is; default: the device of its first parameter.

    Returns:
        ``(N, D) float32`` features on the CPU, in the order of ``texts`` (not normalised).
    """
    from ssl_data.text import TextCollator
    from ssl_data.text.collate import collate_encodings

    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    collator = TextCollator(tokenizer, max_length=max_length)
    encodings = collator.encode(list(texts))
    order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
    out: np.ndarray | None = None
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            sel = order[start : start + batch_size]
            b = collate_encodings([encodings[i] for i in sel], collator.pad_id)
            ids, mask = b["input_ids"].to(device), b["attention_mask"].to(device)
            emb = model.embed(ids, mask).float().cpu().numpy()
            if out is None:
                out = np.zeros((len(order), emb.shape[1]), dtype=np.float32)
            out[sel] = emb
    finally:
        model.train(was_training)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)
