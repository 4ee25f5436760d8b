"""The ssl-serve gRPC server (onnxruntime, numpy and Pillow; never torch)."""

from ssl_serve.server.app import (
    EMBEDDING_SERVICE,
    EmbeddingServer,
    ServerConfig,
    format_address,
    run_until_signal,
)
from ssl_serve.server.metrics import MetricsEndpoint, ServerMetrics
from ssl_serve.server.models import InferenceResult, LoadedModel, ModelRegistry
from ssl_serve.server.service import EmbeddingServicer

__all__ = [
    "EMBEDDING_SERVICE",
    "EmbeddingServer",
    "EmbeddingServicer",
    "InferenceResult",
    "LoadedModel",
    "MetricsEndpoint",
    "ModelRegistry",
    "ServerConfig",
    "ServerMetrics",
    "format_address",
    "run_until_signal",
]
