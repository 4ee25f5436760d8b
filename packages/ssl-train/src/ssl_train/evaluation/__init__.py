"""Evaluation of frozen encoders: kNN top-1 on embeddings."""

from ssl_train.evaluation.embed import embed_images
from ssl_train.evaluation.knn import knn_predict, knn_top1

__all__ = ["embed_images", "knn_predict", "knn_top1"]
