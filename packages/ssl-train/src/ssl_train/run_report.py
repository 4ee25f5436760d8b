"""The end of a run: PNG curves from ``metrics.jsonl`` and the embedding map, in ``<run>/plots``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ssl_data import FASHION_MNIST_CLASSES
from ssl_models import SSLMethod
from ssl_train.logging import METRICS_FILE, MetricLogger, MlflowSink, read_metrics
from ssl_train.logging.plots import embedding_map, plot_curves
from ssl_train.online_eval import Evaluation, OnlineEvaluator
from ssl_train.recipe import Recipe

PLOTS_DIR = "plots"
EMBEDDING_MAP = "embedding_map.png"


def write_plots(
    run_dir: Path,
    recipe: Recipe,
    model: SSLMethod,
    evaluator: OnlineEvaluator | None,
    device: torch.device,
    evaluation: Evaluation | None = None,
    logger: MetricLogger | None = None,
) -> dict[str, Path]:
    """Write ``loss.png``, ``lr.png``, ``knn_top1.png``, ``collapse_std.png`` and
    ``embedding_map.png`` (t-SNE of held-out embeddings coloured by label) into ``run_dir/plots``.

    Args:
        run_dir: The run folder (reads its ``metrics.jsonl``, over every resumed segment).
        recipe: ``logging.embedding_map`` / ``embedding_map_samples`` and the seed.
        model: The trained method (for held-out embeddings when ``evaluation`` has none).
        evaluator: Holds the held-out images; None skips the map.
        device: Where the model is.
        evaluation: An evaluation of the final weights, whose embeddings the map reuses.
        logger: Its MLflow sink, if any, receives the PNGs as artifacts.

    Returns:
        Plot name (``loss``, ``lr``, ``knn_top1``, ``collapse_std``, ``embedding_map``) -> PNG.
    """
    out = run_dir / PLOTS_DIR
    written = plot_curves(read_metrics(run_dir / METRICS_FILE), out)
    lg = recipe.logging
    labels = np.empty(0, dtype=np.int64)
    if lg.embedding_map and evaluator is not None and len(evaluator.heldout) >= 5:
        m = lg.embedding_map_samples
        if evaluation is not None:
            emb, labels = evaluation.heldout_embeddings[:m], evaluation.heldout_labels[:m]
        else:
            emb = evaluator.embed(model, evaluator.heldout[:m])
            labels = evaluator.heldout_labels[:m]
        finite = np.isfinite(emb).all(axis=1)  # a diverged encoder has nothing to map
        emb, labels = emb[finite], labels[finite]
    if lg.embedding_map and evaluator is not None and len(labels) >= 5:
        names = FASHION_MNIST_CLASSES if recipe.data.dataset == "fashion_mnist" else None
        embedding_map(
            emb, labels, out / EMBEDDING_MAP, class_names=names, seed=recipe.seed,
            threads=1,
            title=f"{recipe.name}: t-SNE of {len(labels)} held-out embeddings",
        )  # fmt: skip
        written["embedding_map"] = out / EMBEDDING_MAP
    if logger is not None and written:
        for sink in logger.sinks:
            if isinstance(sink, MlflowSink):
                sink.log_artifacts(out)
    return written
