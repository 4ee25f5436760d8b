"""The ssl-serve gRPC server (onnxruntime, numpy and Pillow; never torch)."""

from ssl_serve.server.app import (
    EMBEDDING_SERVICE,
    EmbeddingServer,
    ServerConfig,
    format_address,
    run_until_signal,
)
from ssl_serve.server.batcher import BatchingConfig, DynamicBatcher, ModelBatcher, TextRows
from ssl_serve.server.logs import JsonFormatter, configure_logging
from ssl_serve.server.metrics import MetricsEndpoint, ServerMetrics
from ssl_serve.server.models import InferenceResult, LoadedModel, ModelRegistry
from ssl_serve.server.reload import ReloadReport, RepositoryWatcher
from ssl_serve.server.security import (
    BearerTokenInterceptor,
    read_token_file,
    server_credentials,
)
from ssl_serve.server.service import EmbeddingServicer

__all__ = [
    "EMBEDDING_SERVICE",
    "BatchingConfig",
    "BearerTokenInterceptor",
    "DynamicBatcher",
    "EmbeddingServer",
    "EmbeddingServicer",
    "InferenceResult",
    "JsonFormatter",
    "LoadedModel",
    "MetricsEndpoint",
    "ModelBatcher",
    "ModelRegistry",
    "ReloadReport",
    "RepositoryWatcher",
    "ServerConfig",
    "ServerMetrics",
    "TextRows",
    "configure_logging",
    "format_address",
    "read_token_file",
    "run_until_signal",
    "server_credentials",
]
