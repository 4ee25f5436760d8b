"""Heads placed on top of encoders."""

from ssl_models.heads.projection_head import ProjectionHead

__all__ = ["ProjectionHead"]
