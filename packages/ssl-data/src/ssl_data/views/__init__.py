"""View generators: the augmented inputs each self-supervised method trains on."""

from ssl_data.views.simclr import SimCLRView

__all__ = ["SimCLRView"]
