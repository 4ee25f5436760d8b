"""Export a training checkpoint or a local Hugging Face text model as a served bundle (needs the `ssl-serve[export]` extra: torch).

The serving runtime never imports this package.
"""

from ssl_serve.export.bundle_export import export_checkpoint
from ssl_serve.export.checkpoint import (
    Checkpoint,
    ClassifierHead,
    image_preprocessing_from_recipe,
    load_checkpoint,
    load_classifier_head,
    resolve_checkpoint_dir,
)
from ssl_serve.export.hf_model import (
    SentenceTransformersConfig,
    export_hf_model,
    read_sentence_transformers_config,
    wordnet_validation_texts,
)
from ssl_serve.export.onnx_graph import (
    ClassifierModel,
    EmbeddingModel,
    export_onnx,
    fold_batch_norm,
)
from ssl_serve.export.text_graph import TextEmbeddingModel, export_text_onnx, pool_tokens
from ssl_serve.export.validate import (
    compare_embeddings,
    pytorch_text_embeddings,
    validate_export,
    validate_probabilities,
    validate_text_export,
)
from ssl_serve.export.variants import (
    make_variants,
    matmul_outlier_ranking,
    optimize_onnx,
    quantize_int8,
)

__all__ = [
    "Checkpoint",
    "ClassifierHead",
    "ClassifierModel",
    "EmbeddingModel",
    "SentenceTransformersConfig",
    "TextEmbeddingModel",
    "compare_embeddings",
    "export_checkpoint",
    "export_hf_model",
    "export_onnx",
    "export_text_onnx",
    "fold_batch_norm",
    "image_preprocessing_from_recipe",
    "load_checkpoint",
    "load_classifier_head",
    "make_variants",
    "matmul_outlier_ranking",
    "optimize_onnx",
    "pool_tokens",
    "pytorch_text_embeddings",
    "quantize_int8",
    "read_sentence_transformers_config",
    "resolve_checkpoint_dir",
    "validate_export",
    "validate_probabilities",
    "validate_text_export",
    "wordnet_validation_texts",
]
