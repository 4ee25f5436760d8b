"""PNG plots of a run: loss, learning-rate and evaluation curves, and a 2-D map of embeddings.

Drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display needed). The
map is a t-SNE (scikit-learn) of L2-normalised embeddings, so Euclidean neighbourhoods in the
input match the cosine neighbourhoods that kNN evaluation uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DPI = 100
CURVE_SIZE = (640, 400)  # pixels (width, height)
MAP_SIZE = (800, 700)

CURVES = {
    "loss": ("loss.png", "Training loss"),
    "lr": ("lr.png", "Learning rate"),
    "knn_top1": ("knn_top1.png", "kNN top-1 (held-out)"),
    "collapse_std": ("collapse_std.png", "Collapse monitor: std of normalised embeddings"),
}


def _figure(size: tuple[int, int]) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)


def plot_curves(rows: Sequence[dict[str, Any]], out_dir: str | Path) -> dict[str, Path]:
    """One PNG per metric of ``metrics.jsonl`` rows that has at least one finite value.

    Args:
        rows: ``metrics.jsonl`` rows (``step`` plus values); missing or non-finite values
            (skipped steps) are left out of the curve.
        out_dir: Folder for ``loss.png``, ``lr.png``, ``knn_top1.png``, ``collapse_std.png``
            (created), each :data:`CURVE_SIZE` pixels.

    Returns:
        Metric name -> PNG path, for the plots written.
    """
    out = Path(out_dir)
    written: dict[str, Path] = {}
    for key, (filename, title) in CURVES.items():
        points = [
            (int(r["step"]), float(r[key]))
            for r in rows
            if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
        ]
        if not points:
            continue
        steps, values = zip(*points, strict=True)
        fig = _figure(CURVE_SIZE)
        ax = fig.add_subplot()
        ax.plot(steps, values, marker="o" if len(points) < 30 else None, linewidth=1.5)
        refs = [r["collapse_std_reference"] for r in rows if "collapse_std_reference" in r]
        if key == "collapse_std" and refs:
            ax.axhline(refs[-1], color="grey", linestyle="--", label="1/sqrt(D), isotropic")
            ax.legend(loc="best")
        ax.set(title=title, xlabel="optimiser step", ylabel=key)
        ax.grid(alpha=0.3)
        if key == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        fig.tight_layout()
        out.mkdir(parents=True, exist_ok=True)
        fig.savefig(out / filename, dpi=DPI)
        written[key] = out / filename
    return written


def embedding_map(
    embeddings: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
    threads: int = 1,
    title: str = "t-SNE of held-out embeddings",
) -> np.ndarray:
    """A t-SNE map of embeddings, one colour per label, written as a :data:`MAP_SIZE` PNG.

    Args:
        embeddings: ``(N, D) float`` embeddings (N >= 5), L2-normalised here.
        labels: ``(N,) int`` class indices.
        path: The PNG file.
        class_names: Legend names indexed by label (default: the numbers).
        seed: t-SNE's random state (the map is reproducible).
        threads: OpenMP threads for t-SNE (more than the free cores slows it badly).
        title: Figure title.

    Returns:
        ``(N, 2) float32`` map coordinates.

    Raises:
        ValueError: Shapes disagree or N < 5.

    Reference: van der Maaten & Hinton, "Visualizing Data using t-SNE", JMLR 2008;
    Barnes-Hut approximation, arXiv:1301.3342.
    """
    from sklearn.manifold import TSNE  # type: ignore[import-untyped]
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    x = np.asarray(embeddings, dtype=np.float32)
    y = np.asarray(labels)
    if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] < 5:
        raise ValueError(
            f"need embeddings (N, D) and labels (N,) with N >= 5, got {x.shape} and {y.shape}"
        )
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    perplexity = min(30.0, (x.shape[0] - 1) / 3)
    tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=seed, max_iter=500)
    with threadpool_limits(limits=max(1, threads)):
        coords = np.asarray(tsne.fit_transform(x), dtype=np.float32)

    from matplotlib import colormaps

    fig = _figure(MAP_SIZE)
    ax = fig.add_subplot()
    classes = np.unique(y)
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    for i, c in enumerate(classes):
        sel = y == c
        name = class_names[int(c)] if class_names is not None and 0 <= c < len(class_names) else c
        ax.scatter(coords[sel, 0], coords[sel, 1], s=6, color=cmap(i % cmap.N), label=str(name))
    ax.set(title=title, xticks=[], yticks=[])
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=3, frameon=False)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return coords
