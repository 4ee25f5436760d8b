"""Weighted kNN classification of embeddings, the standard monitor of self-supervised encoders."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ssl_train.evaluation.metrics import topk_accuracy


def knn_votes(
    train_embeddings: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_embeddings: np.ndarray | torch.Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Class votes of the k most cosine-similar train rows, for every test row.

    Each of the k neighbours votes for its label with weight ``exp(cos / temperature)``; the
    predicted label is the class with the most votes (:func:`knn_predict`), the top-5 the five
    classes with the most.

    Args:
        train_embeddings: ``(N, D)`` float memory bank.
        train_labels: ``(N,)`` int labels in [0, num_classes).
        test_embeddings: ``(M, D)`` float queries.
        k: Neighbours (clipped to N).
        temperature: Vote temperature (> 0).
        num_classes: Default ``max(train_labels) + 1``.
        chunk_size: Queries per block (bounds memory to ``chunk_size * N`` floats).

    Returns:
        ``(M, num_classes) float32`` votes.

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
        out.append(torch.zeros(sim.shape[0], c).scatter_add_(1, labels[top_idx], weights))
    return torch.cat(out)


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
    """Predicted labels, ``(M,) int64``: the argmax of :func:`knn_votes` (same arguments)."""
    votes = knn_votes(train_embeddings, train_labels, test_embeddings, k=k,
                      temperature=temperature, num_classes=num_classes, chunk_size=chunk_size)  # fmt: skip
    return votes.argmax(dim=1).numpy()


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


def knn_accuracy(
    train_embeddings: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_embeddings: np.ndarray | torch.Tensor,
    test_labels: np.ndarray | torch.Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
) -> tuple[float, float]:
    """kNN ``(top-1, top-5)`` accuracy in [0, 1] (see :func:`knn_votes` for the arguments).

    Top-5 counts a test row as right when its label is among the five classes with the most
    votes (all classes when there are fewer than five). Top-1 equals :func:`knn_top1`.

    Reference: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
    arXiv:2104.14294 (weighted kNN top-1/top-5, ``eval_knn.py``).
    """
    y = np.asarray(test_labels)
    num_classes = int(max(np.max(np.asarray(train_labels)), np.max(y)) + 1)
    votes = knn_votes(train_embeddings, train_labels, test_embeddings, k=k,
                      temperature=temperature, num_classes=num_classes)  # fmt: skip
    top1, top5 = topk_accuracy(votes, y, (1, 5))
    return top1, top5
