"""Evaluation of frozen encoders: weighted kNN (top-1/top-5) and the linear probe."""

from ssl_train.evaluation.embed import embed_images, embed_texts
from ssl_train.evaluation.knn import knn_accuracy, knn_predict, knn_top1, knn_votes
from ssl_train.evaluation.linear_probe import (
    WEIGHT_DECAYS,
    LinearProbeResult,
    fit_logistic_regression,
    linear_probe,
)
from ssl_train.evaluation.metrics import topk_accuracy

__all__ = [
    "WEIGHT_DECAYS",
    "LinearProbeResult",
    "embed_images",
    "embed_texts",
    "fit_logistic_regression",
    "knn_accuracy",
    "knn_predict",
    "knn_top1",
    "knn_votes",
    "linear_probe",
    "topk_accuracy",
]
