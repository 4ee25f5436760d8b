"""Export a training checkpoint, a local Hugging Face text or speech model, or ssl-models' speech
encoder as a served bundle (needs the `ssl-serve[export]` extra: torch).

The serving runtime never imports this package.
"""

from ssl_serve.export.audio_export import (
    AUDIO_MODEL_TYPES,
    default_validation_recordings,
    export_audio_encoder,
    export_hf_audio_model,
    export_speech_encoder,
    is_audio_model_dir,
    zero_mean_unit_var,
)
from ssl_serve.export.audio_graph import (
    AudioClassifierModel,
    AudioEmbeddingModel,
    conv_output_lengths,
    export_audio_onnx,
)
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
from ssl_serve.export.speech_checkpoint import export_speech_checkpoint, is_speech_checkpoint
from ssl_serve.export.text_checkpoint import (
    TextCheckpoint,
    TextCheckpointModel,
    export_text_checkpoint,
    is_text_checkpoint,
    load_text_checkpoint,
    validate_text_probabilities,
)
from ssl_serve.export.text_graph import TextEmbeddingModel, export_text_onnx, pool_tokens
from ssl_serve.export.validate import (
    compare_embeddings,
    onnx_audio_embeddings,
    pytorch_text_embeddings,
    validate_audio_export,
    validate_audio_probabilities,
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
    "AUDIO_MODEL_TYPES",
    "AudioClassifierModel",
    "AudioEmbeddingModel",
    "Checkpoint",
    "ClassifierHead",
    "ClassifierModel",
    "EmbeddingModel",
    "SentenceTransformersConfig",
    "TextCheckpoint",
    "TextCheckpointModel",
    "TextEmbeddingModel",
    "compare_embeddings",
    "conv_output_lengths",
    "default_validation_recordings",
    "export_audio_encoder",
    "export_audio_onnx",
    "export_checkpoint",
    "export_hf_audio_model",
    "export_hf_model",
    "export_onnx",
    "export_speech_checkpoint",
    "export_speech_encoder",
    "export_text_checkpoint",
    "export_text_onnx",
    "fold_batch_norm",
    "image_preprocessing_from_recipe",
    "is_audio_model_dir",
    "is_speech_checkpoint",
    "is_text_checkpoint",
    "load_checkpoint",
    "load_classifier_head",
    "load_text_checkpoint",
    "make_variants",
    "matmul_outlier_ranking",
    "onnx_audio_embeddings",
    "optimize_onnx",
    "pool_tokens",
    "pytorch_text_embeddings",
    "quantize_int8",
    "read_sentence_transformers_config",
    "resolve_checkpoint_dir",
    "validate_audio_export",
    "validate_audio_probabilities",
    "validate_export",
    "validate_probabilities",
    "validate_text_export",
    "validate_text_probabilities",
    "wordnet_validation_texts",
    "zero_mean_unit_var",
]
