"""Linear probe: multinomial logistic regression on frozen embeddings, with a weight-decay sweep.

Protocol (:func:`linear_probe`):

1. Standardise every feature dimension with the train split's mean and standard deviation
   (the parameter-free batch norm of MAE's probe, arXiv:2111.06377 appendix A.2, computed once
   over the whole split).
2. Hold out ``val_fraction`` of the train split (a permutation fixed by ``seed``).
3. For each weight decay, from the strongest to the weakest, fit softmax regression on the rest
   of the train split (at most ``sweep_rows`` rows of it, the next ones of the same
   permutation, which bounds the sweep's cost on large splits) by full-batch L-BFGS, each fit
   starting from the previous solution (a regularisation path), and score top-1 on the
   held-out part.
4. Refit on the whole train split with the weight decay of the best held-out top-1 (the
   strongest one on ties), starting from its path solution, and report top-1 and top-5 on the
   test split. When the sweep fitted fewer rows than the whole split, the weight decay is
   scaled by their ratio, which keeps the penalty against the summed (not mean) loss fixed, as
   a fixed ``C`` of scikit-learn's ``LogisticRegression`` does.

Full-batch L-BFGS makes the result a deterministic function of the features, the labels and
``seed`` (no mini-batch order, no learning rate to tune), as in the L-BFGS logistic-regression
probes of CLIP (arXiv:2103.00020, appendix A.3) and SimCLR's appendix B.6.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ssl_train.evaluation.metrics import topk_accuracy

#: The default sweep: decades from strong to weak (the objective is the mean cross-entropy plus
#: ``weight_decay / 2 * |W|^2``).
WEIGHT_DECAYS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)


def _as_features(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if t.ndim != 2 or not (t.is_floating_point() or t.dtype == torch.uint8):
        raise ValueError(f"{name} must be (N, D) floats, got {tuple(t.shape)} {t.dtype}")
    t = t.detach().to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} holds NaN or infinite values")
    return t


def _as_labels(y: np.ndarray | torch.Tensor, n: int, name: str) -> torch.Tensor:
    t = y if isinstance(y, torch.Tensor) else torch.from_numpy(np.asarray(y))
    if t.shape != (n,) or t.is_floating_point() or t.is_complex():
        raise ValueError(f"{name} must be ({n},) integers, got {tuple(t.shape)} {t.dtype}")
    t = t.to(torch.int64)
    if n and int(t.min()) < 0:
        raise ValueError(f"{name} must be >= 0, got {int(t.min())}")
    return t


def fit_logistic_regression(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight_decay: float,
    *,
    num_classes: int,
    max_iter: int = 50,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise ``mean_i CE(x_i W + b, y_i) + weight_decay / 2 * |W|^2`` by full-batch L-BFGS.

    The gradient is computed in closed form (``(softmax - onehot)``, no autograd graph), which
    keeps one evaluation at two passes over the features; the bias is not regularised.

    Args:
        features: ``(N, D) float32``, on the device to compute on (standardised by the caller).
        labels: ``(N,) int64`` in [0, num_classes), same device.
        weight_decay: L2 coefficient (>= 0).
        num_classes: C (>= 2).
        max_iter: L-BFGS iterations (strong-Wolfe line search; it stops earlier when the
            largest gradient entry falls below 1e-5).
        init: ``(W (D, C), b (C,))`` to start from (default zeros).

    Returns:
        ``(W (D, C) float32, b (C,) float32)``.

    Raises:
        ValueError: A negative ``weight_decay``, ``max_iter`` < 1 or ``num_classes`` < 2.

    Reference: Liu & Nocedal, "On the limited memory BFGS method for large scale
    optimization", Math. Programming 45 (1989).
    """
    if weight_decay < 0 or max_iter < 1 or num_classes < 2:
        raise ValueError(
            f"need weight_decay >= 0, max_iter >= 1, num_classes >= 2; got {weight_decay}, "
            f"{max_iter}, {num_classes}"
        )
    n, d = features.shape
    theta = torch.zeros(d + 1, num_classes, dtype=torch.float32, device=features.device)
    if init is not None:
        theta[:-1].copy_(init[0])
        theta[-1].copy_(init[1])
    theta.requires_grad_(True)
    onehot = torch.nn.functional.one_hot(labels, num_classes).to(torch.float32)
    optimizer = torch.optim.LBFGS(
        [theta], lr=1.0, max_iter=max_iter, history_size=10, tolerance_grad=1e-5,
        tolerance_change=1e-9, line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> torch.Tensor:
        with torch.no_grad():
            w, b = theta[:-1], theta[-1]
            logits = torch.addmm(b, features, w)
            lse = torch.logsumexp(logits, dim=1)
            loss = (lse - (logits * onehot).sum(dim=1)).mean() + 0.5 * weight_decay * (w * w).sum()
            residual = (torch.exp(logits - lse[:, None]) - onehot) / n
            grad = torch.empty_like(theta)
            # (R^T X)^T reads X row-major; X^T R would walk it by columns, ~10x slower on CPU.
            grad[:-1] = torch.mm(residual.T, features).T + weight_decay * w
            grad[-1] = residual.sum(dim=0)
        theta.grad = grad
        return loss

    optimizer.step(closure)
    out = theta.detach()
    return out[:-1].clone(), out[-1].clone()


@dataclass(frozen=True)
class LinearProbeResult:
    """What :func:`linear_probe` measured, and the classifier it fitted.

    Attributes:
        top1: Test top-1 accuracy in [0, 1].
        top5: Test top-5 accuracy in [0, 1] (1.0 when there are at most five classes).
        weight_decay: The weight decay of the final fit.
        val_top1: Held-out top-1 of every weight decay of the sweep (empty without a sweep).
        sweep_rows: Rows each sweep fit used (0 without a sweep).
        num_train: Train rows (held-out part included).
        num_test: Test rows.
        num_classes: C.
        seconds: Wall-clock time of the whole protocol.
        mean: ``(D,) float32`` standardisation mean.
        std: ``(D,) float32`` standardisation scale.
        weight: ``(D, C) float32`` weights on standardised features.
        bias: ``(C,) float32``.
    """

    top1: float
    top5: float
    weight_decay: float
    val_top1: dict[float, float]
    sweep_rows: int
    num_train: int
    num_test: int
    num_classes: int
    seconds: float
    mean: np.ndarray = field(repr=False)
    std: np.ndarray = field(repr=False)
    weight: np.ndarray = field(repr=False)
    bias: np.ndarray = field(repr=False)

    def scores(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class logits ``(M, C) float32`` of raw ``(M, D)`` features."""
        x = _as_features(features, "features").numpy()
        out: np.ndarray = ((x - self.mean) / self.std) @ self.weight + self.bias
        return out


def linear_probe(
    train_features: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_features: np.ndarray | torch.Tensor,
    test_labels: np.ndarray | torch.Tensor,
    *,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    val_fraction: float = 0.1,
    seed: int = 0,
    max_iter: int = 50,
    sweep_rows: int | None = 10_000,
    device: str | torch.device | None = None,
) -> LinearProbeResult:
    """Linear-probe accuracy of frozen embeddings (protocol in the module docstring).

    Args:
        train_features: ``(N, D)`` float embeddings of the labelled train split.
        train_labels: ``(N,)`` int labels.
        test_features: ``(M, D)`` float embeddings of the test split.
        test_labels: ``(M,)`` int labels.
        weight_decays: The sweep (each >= 0); with one value, or ``val_fraction`` 0, it is
            used directly.
        val_fraction: Part of the train split held out to choose the weight decay, in [0, 1).
        seed: Fixes the held-out part.
        max_iter: L-BFGS iterations per fit (see :func:`fit_logistic_regression`).
        sweep_rows: Most rows each sweep fit uses (None: the whole fitting part). The final
            fit always uses the whole train split.
        device: Where to compute (default CPU); results agree across devices to float
            tolerance.

    Returns:
        The test accuracies, the sweep and the fitted classifier.

    Raises:
        ValueError: Shapes or dtypes disagree, non-finite features, fewer than 2 classes, an
            empty sweep or a negative weight decay, ``val_fraction`` outside [0, 1),
            ``sweep_rows`` < 2, or a held-out or fitting part that would be empty.

    Reference: Kolesnikov, Zhai & Beyer, "Revisiting Self-Supervised Visual Representation
    Learning", arXiv:1901.09005 (linear evaluation with an L-BFGS logistic regression);
    Radford et al., arXiv:2103.00020, appendix A.3.
    """
    start = time.perf_counter()
    xtr, xte = _as_features(train_features, "train features"), _as_features(test_features, "test features")  # fmt: skip
    ytr = _as_labels(train_labels, xtr.shape[0], "train labels")
    yte = _as_labels(test_labels, xte.shape[0], "test labels")
    if xtr.shape[1] != xte.shape[1] or xtr.shape[0] == 0 or xte.shape[0] == 0:
        raise ValueError(
            f"need non-empty train (N, D) and test (M, D) features of one width, got "
            f"{tuple(xtr.shape)} and {tuple(xte.shape)}"
        )
    decays = [float(w) for w in weight_decays]
    if not decays or min(decays) < 0:
        raise ValueError(f"weight_decays must be a non-empty list of values >= 0, got {decays}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if sweep_rows is not None and sweep_rows < 2:
        raise ValueError(f"sweep_rows must be >= 2 or None, got {sweep_rows}")
    num_classes = int(max(int(ytr.max()), int(yte.max())) + 1)
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got labels up to {num_classes - 1}")
    dev = torch.device(device) if device is not None else torch.device("cpu")

    stats = xtr.to(torch.float64)
    mean = stats.mean(dim=0)
    std = stats.std(dim=0)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))  # constant dimensions stay 0
    del stats
    xtr_s = ((xtr - mean.float()) / std.float()).to(dev)
    xte_s = ((xte - mean.float()) / std.float()).to(dev)
    ytr, yte = ytr.to(dev), yte.to(dev)

    sweep = len(decays) > 1 and val_fraction > 0
    val_top1: dict[float, float] = {}
    init = None
    chosen = decays[0]
    n_fit = 0
    if sweep:
        n = xtr_s.shape[0]
        n_val = round(n * val_fraction)
        if n_val < 1 or n - n_val < 2:
            raise ValueError(
                f"val_fraction={val_fraction} of {n} train rows leaves an empty held-out or "
                "fitting part"
            )
        perm = torch.from_numpy(np.random.default_rng(seed).permutation(n)).to(dev)
        val_idx, fit_idx = perm[:n_val], perm[n_val:][:sweep_rows]
        x_fit, y_fit, x_val, y_val = xtr_s[fit_idx], ytr[fit_idx], xtr_s[val_idx], ytr[val_idx]
        n_fit = len(fit_idx)
        best = -1.0
        solutions = {}
        for wd in sorted(decays, reverse=True):
            init = fit_logistic_regression(x_fit, y_fit, wd, num_classes=num_classes,
                                           max_iter=max_iter, init=init)  # fmt: skip
            solutions[wd] = init
            acc = float((torch.addmm(init[1], x_val, init[0]).argmax(dim=1) == y_val).double().mean())  # fmt: skip
            val_top1[wd] = acc
            if acc > best:
                best, chosen = acc, wd
        init = solutions[chosen]
        chosen *= n_fit / n
        del x_fit, x_val
    w, b = fit_logistic_regression(
        xtr_s, ytr, chosen, num_classes=num_classes, max_iter=max_iter, init=init
    )
    top1, top5 = topk_accuracy(torch.addmm(b, xte_s, w), yte, (1, 5))
    return LinearProbeResult(
        top1=top1,
        top5=top5,
        weight_decay=chosen,
        val_top1=val_top1,
        sweep_rows=n_fit,
        num_train=int(xtr.shape[0]),
        num_test=int(xte.shape[0]),
        num_classes=num_classes,
        seconds=time.perf_counter() - start,
        mean=mean.float().numpy(),
        std=std.float().numpy(),
        weight=w.cpu().numpy(),
        bias=b.cpu().numpy(),
    )
