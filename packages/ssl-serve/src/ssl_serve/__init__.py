"""ssl-serve: ONNX embedding bundles and a gRPC server on onnxruntime (no torch at serve time).

The runtime (bundle, repository, preprocess, runtime, server, client) needs onnxruntime,
grpcio, numpy, Pillow and tokenizers only; `ssl_serve.export` (the `[export]` extra) adds torch.
"""

from ssl_serve.bundle import (
    Bundle,
    ImagePreprocessing,
    TensorSpec,
    TextPreprocessing,
    read_bundle,
    write_bundle,
)
from ssl_serve.client import (
    AsyncEmbeddingClient,
    Classifications,
    EmbeddingClient,
    ModelInfo,
    RetryPolicy,
    TextEmbeddings,
)
from ssl_serve.errors import (
    BundleError,
    CheckpointError,
    ExportValidationError,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    NotAClassifierError,
    QueueFullError,
    RemoteError,
    RequestDeadlineError,
    RequestDroppedError,
    RequestTooLargeError,
    SslServeError,
    UnauthenticatedError,
    UnsupportedModalityError,
)
from ssl_serve.repository import ModelEntry, ModelRepository

__version__ = "0.1.0"

__all__ = [
    "AsyncEmbeddingClient",
    "Bundle",
    "BundleError",
    "CheckpointError",
    "Classifications",
    "EmbeddingClient",
    "ExportValidationError",
    "ImagePreprocessing",
    "InvalidInputError",
    "ModelEntry",
    "ModelInfo",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "ModelRepository",
    "NotAClassifierError",
    "QueueFullError",
    "RemoteError",
    "RequestDeadlineError",
    "RequestDroppedError",
    "RequestTooLargeError",
    "RetryPolicy",
    "SslServeError",
    "TensorSpec",
    "TextEmbeddings",
    "TextPreprocessing",
    "UnauthenticatedError",
    "UnsupportedModalityError",
    "__version__",
    "read_bundle",
    "write_bundle",
]
