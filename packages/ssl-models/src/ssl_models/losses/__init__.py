"""Self-supervised objectives."""

from ssl_models.losses.nt_xent import NTXentLoss

__all__ = ["NTXentLoss"]
