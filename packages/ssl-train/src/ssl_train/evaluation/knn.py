"""Weighted kNN classification of embeddings, the standard monitor of self-supervised encoders."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def knn_predict(
    train_embeddings: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_embeddings: np.ndarray | torch.Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> np.ndarray:
    """Predict test labels by temperature-weighted votes of the k most cosine-similar train rows.

    Each of the k neighbours votes for its label with weight ``exp(cos / temperature)``.

    Args:
        train_embeddings: ``(N, D)`` float memory bank.
        train_labels: ``(N,)`` int labels in [0, num_classes).
        test_embeddings: ``(M, D)`` float queries.
        k: Neighbours (clipped to N).
        temperature: Vote temperature (> 0).
        num_classes: Default ``max(train_labels) + 1``.
        chunk_size: Queries per block (bounds memory to ``chunk_size * N`` floats).

    Returns:
        ``(M,) int64`` predicted labels.

    Raises:
        ValueError: Shapes disagree, k < 1 or temperature <= 0.

    Reference: Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance
    Discrimination", arXiv:1805.01978 (the weighted kNN used by DINO, arXiv:2104.14294).
    """
    bank = F.normalize(torch.as_tensor(np.asarray(train_embeddings), dtype=torch.float32), dim=1)
    labels = torch.as_tensor(np.asarray(train_labels), dtype=torch.int64)
    queries = F.normalize(torch.as_tensor(np.asarray(test_embeddings), dtype=torch.float32), dim=1)
    if (
        bank.ndim != 2
        or queries.ndim != 2
        or bank.shape[1] != queries.shape[1]
        or labels.shape != (bank.shape[0],)
    ):
        raise ValueError(
            f"need train (N, D), labels (N,), test (M, D); got {tuple(bank.shape)}, "
            f"{tuple(labels.shape)}, {tuple(queries.shape)}"
        )
    if k < 1 or temperature <= 0:
        raise ValueError(
            f"k must be >= 1 and temperature > 0, got k={k}, temperature={temperature}"
        )
    c = int(num_classes if num_classes is not None else labels.max().item() + 1)
    k = min(k, bank.shape[0])
    out = []
    for start in range(0, queries.shape[0], chunk_size):
        sim = queries[start : start + chunk_size] @ bank.T
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(sim.shape[0], c).scatter_add_(1, labels[top_idx], weights)
        out.append(votes.argmax(dim=1))
    return torch.cat(out).numpy()


def knn_top1(
    train_embeddings: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_embeddings: np.ndarray | torch.Tensor,
    test_labels: np.ndarray | torch.Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
) -> float:
    """kNN top-1 accuracy in [0, 1] (see :func:`knn_predict` for the arguments)."""
    num_classes = int(max(np.max(np.asarray(train_labels)), np.max(np.asarray(test_labels))) + 1)
    pred = knn_predict(
        train_embeddings,
        train_labels,
        test_embeddings,
        k=k,
        temperature=temperature,
        num_classes=num_classes,
    )
    return float((pred == np.asarray(test_labels)).mean())
