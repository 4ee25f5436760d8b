"""ssl-models: encoders, heads and self-supervised objectives."""

from ssl_models.encoders import ENCODERS, SmallCNN, build_encoder
from ssl_models.errors import SslModelsError, UnknownNameError
from ssl_models.heads import ProjectionHead
from ssl_models.losses import NTXentLoss
from ssl_models.methods import METHODS, SimCLR, SSLMethod, build_method

__version__ = "0.1.0"

__all__ = [
    "ENCODERS",
    "METHODS",
    "NTXentLoss",
    "ProjectionHead",
    "SSLMethod",
    "SimCLR",
    "SmallCNN",
    "SslModelsError",
    "UnknownNameError",
    "build_encoder",
    "build_method",
]
