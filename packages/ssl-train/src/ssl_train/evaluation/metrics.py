"""Top-k accuracy of class scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def topk_accuracy(
    scores: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    ks: Sequence[int] = (1, 5),
) -> tuple[float, ...]:
    """Fraction of rows whose label is among the ``k`` highest scores, for each ``k``.

    A ``k`` above the number of classes C counts as C (every label is then found).

    Args:
        scores: ``(M, C)`` float class scores (logits, probabilities or votes).
        labels: ``(M,)`` int labels in [0, C).
        ks: The k values (each >= 1).

    Returns:
        One accuracy in [0, 1] per ``k``, in the order of ``ks``.

    Raises:
        ValueError: Shapes disagree, a label is outside [0, C), M is 0 or a k is below 1.
    """
    s = torch.as_tensor(np.asarray(scores) if not isinstance(scores, torch.Tensor) else scores)
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    y = y.to(device=s.device, dtype=torch.int64)
    if s.ndim != 2 or y.shape != (s.shape[0],) or s.shape[0] == 0:
        raise ValueError(
            f"need scores (M, C) and labels (M,) with M >= 1, got {tuple(s.shape)} and "
            f"{tuple(y.shape)}"
        )
    if int(y.min()) < 0 or int(y.max()) >= s.shape[1]:
        raise ValueError(
            f"labels must lie in [0, {s.shape[1]}), got [{int(y.min())}, {int(y.max())}]"
        )
    if min(ks) < 1:
        raise ValueError(f"every k must be >= 1, got {list(ks)}")
    hit = s.topk(min(max(ks), s.shape[1]), dim=1).indices == y[:, None]
    # Top-1 by argmax (the first maximum), so it agrees with an argmax prediction on ties.
    top1 = float((s.argmax(dim=1) == y).double().mean())
    return tuple(
        top1 if k == 1 else float(hit[:, : min(k, s.shape[1])].any(dim=1).double().mean())
        for k in ks
    )
