"""Export a training checkpoint as a served bundle (needs the `ssl-serve[export]` extra: torch).

The serving runtime never imports this package.
"""

from ssl_serve.export.bundle_export import export_checkpoint
from ssl_serve.export.checkpoint import (
    Checkpoint,
    image_preprocessing_from_recipe,
    load_checkpoint,
    resolve_checkpoint_dir,
)
from ssl_serve.export.onnx_graph import EmbeddingModel, export_onnx
from ssl_serve.export.validate import compare_embeddings, validate_export

__all__ = [
    "Checkpoint",
    "EmbeddingModel",
    "compare_embeddings",
    "export_checkpoint",
    "export_onnx",
    "image_preprocessing_from_recipe",
    "load_checkpoint",
    "resolve_checkpoint_dir",
    "validate_export",
]
