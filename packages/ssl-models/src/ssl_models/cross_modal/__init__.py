"""Cross-modal pretraining: CLIP-style contrastive learning between two encoders."""

from ssl_models.cross_modal.clip import CLIP

__all__ = ["CLIP"]
