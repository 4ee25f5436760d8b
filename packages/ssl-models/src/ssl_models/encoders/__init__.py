"""Encoders (backbones) and the registry that builds them from a config dict."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from ssl_models.encoders.resnet import (
    ResNet,
    resnet18,
    resnet18_small,
    resnet34,
    resnet34_small,
    resnet50,
    resnet50_small,
)
from ssl_models.encoders.small_cnn import BasicBlock, SmallCNN
from ssl_models.encoders.vit import VisionTransformer, vit_base, vit_small, vit_tiny
from ssl_models.errors import UnknownNameError
from ssl_models.speech.encoder import SpeechEncoder
from ssl_models.text import (
    BertEncoder,
    GPT2Decoder,
    RecurrentEncoder,
    WordEmbeddingEncoder,
    bert_base,
    bert_mini,
    bert_small,
    bert_tiny,
)

ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": SmallCNN,
    "wav2vec2": SpeechEncoder,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet18_small": resnet18_small,
    "resnet34_small": resnet34_small,
    "resnet50_small": resnet50_small,
    "vit": VisionTransformer,
    "vit_tiny": vit_tiny,
    "vit_small": vit_small,
    "vit_base": vit_base,
    "bert": BertEncoder,
    "bert_tiny": bert_tiny,
    "bert_mini": bert_mini,
    "bert_small": bert_small,
    "bert_base": bert_base,
    "gpt2": GPT2Decoder,
    "recurrent": RecurrentEncoder,
    "word_embedding": WordEmbeddingEncoder,
}


def build_encoder(config: Mapping[str, Any]) -> nn.Module:
    """Build an encoder from ``{"name": ..., **kwargs}``.

    Args:
        config: ``name`` selects the encoder in :data:`ENCODERS`; the other keys are passed to
            its constructor.

    Returns:
        The encoder; it has ``output_dim: int`` and maps ``(B, C, H, W) float32`` images to
        pooled ``(B, output_dim) float32`` features.

    Raises:
        UnknownNameError: The name is not registered (the message lists the known names).
        TypeError: A keyword argument is not accepted by the encoder.
    """
    kwargs = dict(config)
    name = kwargs.pop("name", None)
    if name not in ENCODERS:
        raise UnknownNameError(f"unknown encoder {name!r}; known: {sorted(ENCODERS)}")
    return ENCODERS[name](**kwargs)


__all__ = [
    "ENCODERS",
    "BasicBlock",
    "ResNet",
    "SmallCNN",
    "SpeechEncoder",
    "VisionTransformer",
    "build_encoder",
    "resnet18",
    "resnet18_small",
    "resnet34",
    "resnet34_small",
    "resnet50",
    "resnet50_small",
    "vit_base",
    "vit_small",
    "vit_tiny",
]
