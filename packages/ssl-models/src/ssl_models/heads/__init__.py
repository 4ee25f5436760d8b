"""Heads placed on top of encoders."""

from ssl_models.heads.dino_head import DINOHead
from ssl_models.heads.linear_classifier import LinearClassifier
from ssl_models.heads.prediction_head import PredictionHead
from ssl_models.heads.projection_head import ProjectionHead

__all__ = ["DINOHead", "LinearClassifier", "PredictionHead", "ProjectionHead"]
