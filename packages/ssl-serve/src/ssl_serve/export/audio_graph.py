"""The exported audio graph: waveform normalisation + wav2vec 2.0 / HuBERT encoder + pooling over
real frames + L2 normalisation, correct for zero-padded batches of clips of different lengths;
for a fine-tuned speech classifier, also the softmax of its head on the pooled features."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl_serve.bundle import AUDIO_INPUT_NAMES, AUDIO_POOLING_MODES, PROBABILITIES_OUTPUT
from ssl_serve.export.onnx_graph import NORM_EPS, OUTPUT_NAME
from ssl_serve.export.text_graph import export_padded_inputs_onnx

# wav2vec 2.0's feature extractor divides by sqrt(variance + 1e-7) (transformers'
# Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm).
WAVEFORM_NORM_EPS = 1e-7


def conv_output_lengths(
    lengths: torch.Tensor, kernels: Sequence[int], strides: Sequence[int]
) -> torch.Tensor:
    """Frames a stack of unpadded 1-D convolutions makes from ``lengths`` input samples.

    Each convolution maps L to ``floor((L - kernel) / stride) + 1``, so a clip's frames see only
    its own samples.

    Args:
        lengths: ``(B,) int64`` lengths in samples.
        kernels: Kernel of each convolution.
        strides: Stride of each convolution.

    Returns:
        ``(B,) int64`` frame counts, 0 for clips shorter than one receptive field.
    """
    n = lengths
    for k, s in zip(kernels, strides, strict=True):
        n = torch.div(n - k, s, rounding_mode="floor") + 1
    return n.clamp(min=0)


class AudioEmbeddingModel(nn.Module):
    """A wav2vec 2.0 / HuBERT encoder's pooled, L2-normalised output: what an audio bundle serves.

    The graph makes a clip's embedding independent of the padding around it:

    1. ``normalize``: each clip is normalised to zero mean and unit variance over its real
       samples (``(x - mean) / sqrt(var + 1e-7)``, as transformers' ``Wav2Vec2FeatureExtractor``);
       padded samples are set to 0.
    2. The convolutional feature encoder. Models with ``feat_extract_norm="group"`` (wav2vec 2.0
       base, HuBERT base) normalise the first convolution's channels over time; here that
       GroupNorm's statistics are taken over each clip's real positions only (the same values
       as running the clip alone), instead of over the padded batch. Later convolutions are
       unpadded, so a real frame only sees real samples.
    3. The projection and the transformer, with a frame mask from the conv strides and kernels
       (padded frames zeroed before the position convolution and masked out of attention).
    4. Mean of the final hidden states over each clip's real frames, then L2 normalisation.

    Args:
        encoder: A transformers ``Wav2Vec2Model`` or ``HubertModel`` (eval mode, eager
            attention; ssl-models' ``SpeechEncoder.wav2vec2`` is one): it has
            ``feature_extractor.conv_layers``, ``feature_projection``, ``encoder`` and
            ``config``.
        normalize: Normalise each clip's waveform over its real samples first.
        pooling: "mean" (over real frames).
        eps: Lower bound on the norm divided by in the L2 normalisation.

    Shape:
        Inputs ``input_values (B, T) float32`` (zero-padded waveforms at the model's rate) and
        ``attention_mask (B, T) int64`` (1 on a clip's real samples, a prefix of each row);
        output ``(B, hidden_size) float32`` rows of unit L2 norm.

    Raises:
        ValueError: An unknown ``pooling``, an encoder with an adapter (``add_adapter``), or one
            without the wav2vec 2.0 structure.

    Reference: Baevski et al., "wav2vec 2.0", arXiv:2006.11477; Hsu et al., "HuBERT",
    arXiv:2106.07447.
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        normalize: bool,
        pooling: str = "mean",
        eps: float = NORM_EPS,
    ) -> None:
        super().__init__()
        if pooling not in AUDIO_POOLING_MODES:
            raise ValueError(f"pooling must be one of {list(AUDIO_POOLING_MODES)}, got {pooling!r}")
        config = getattr(encoder, "config", None)
        layers = getattr(getattr(encoder, "feature_extractor", None), "conv_layers", None)
        if config is None or layers is None or not hasattr(encoder, "feature_projection"):
            raise ValueError(
                f"{type(encoder).__name__} is not a wav2vec 2.0-style encoder (config, "
                "feature_extractor.conv_layers, feature_projection, encoder)"
            )
        if getattr(config, "add_adapter", False):
            raise ValueError("encoders with an adapter (config.add_adapter) are not supported")
        self.encoder = encoder
        self.normalize = normalize
        self.pooling = pooling
        self.eps = eps
        self.kernels = tuple(int(k) for k in config.conv_kernel)
        self.strides = tuple(int(s) for s in config.conv_stride)
        self.output_dim = int(config.hidden_size)
        # transformers builds the first layer with nn.GroupNorm(C, C) for "group" models.
        self.group_norm = isinstance(getattr(layers[0], "layer_norm", None), nn.GroupNorm)

    @property
    def input_names(self) -> tuple[str, ...]:
        """Graph input names, in the order :meth:`forward` takes them."""
        return AUDIO_INPUT_NAMES

    @property
    def samples_per_frame(self) -> int:
        """Hop between consecutive frames, in samples (320 for wav2vec 2.0)."""
        hop = 1
        for s in self.strides:
            hop *= s
        return hop

    @property
    def receptive_field(self) -> int:
        """Samples one frame sees (400 for wav2vec 2.0); shorter clips have no frame."""
        field, hop = 1, 1
        for k, s in zip(self.kernels, self.strides, strict=True):
            field += (k - 1) * hop
            hop *= s
        return field

    @property
    def output_names(self) -> tuple[str, ...]:
        """Graph output names, in the order :meth:`forward` returns them."""
        return (OUTPUT_NAME,)

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.pooled(input_values, attention_mask), p=2.0, dim=1, eps=self.eps)

    def pooled(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The mean of the final hidden states over each clip's real frames, before the L2
        normalisation (what ssl-models' ``SpeechEncoder`` returns, and what a fine-tuned
        classifier head reads).

        Args:
            input_values: ``(B, T) float32`` zero-padded waveforms.
            attention_mask: ``(B, T) int64``, 1 on each clip's real samples (a prefix).

        Returns:
            ``(B, hidden_size) float32``.
        """
        real = attention_mask > 0
        mask = real.to(input_values.dtype)
        lengths = real.to(torch.int64).sum(dim=1)
        count = mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        # where, not a product with the mask: NaN * 0 is NaN, and padding is the caller's.
        x = torch.where(real, input_values, torch.zeros_like(input_values))
        if self.normalize:
            mean = x.sum(dim=1, keepdim=True) / count
            centred = torch.where(real, x - mean, torch.zeros_like(x))
            var = (centred * centred).sum(dim=1, keepdim=True) / count
            x = centred / torch.sqrt(var + WAVEFORM_NORM_EPS)
        features = self._feature_encoder(x, lengths)  # (B, C, F)
        frames = conv_output_lengths(lengths, self.kernels, self.strides)
        # Frame positions from a cumulative sum, not arange(F): the traced graph keeps F dynamic.
        positions = torch.ones_like(features[:1, 0, :], dtype=torch.int64).cumsum(dim=1) - 1
        frame_mask = positions < frames[:, None]  # (B, F) bool
        encoder: Any = self.encoder  # transformers modules, untyped
        projected = encoder.feature_projection(features.transpose(1, 2))
        if isinstance(projected, tuple):  # Wav2Vec2 also returns the normed features
            projected = projected[0]
        out = encoder.encoder(projected, attention_mask=frame_mask)
        states = out[0] if isinstance(out, tuple) else out.last_hidden_state
        weights = frame_mask.unsqueeze(-1).to(states.dtype)
        # masked_fill, not only a product: a non-finite padded frame must not leak in.
        total = states.masked_fill(~frame_mask.unsqueeze(-1), 0.0).sum(dim=1)
        pooled: torch.Tensor = total / weights.sum(dim=1).clamp(min=1.0)
        return pooled

    def _feature_encoder(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` waveforms -> ``(B, C, F)`` conv features, the GroupNorm over real frames."""
        hidden = x[:, None]
        encoder: Any = self.encoder
        for i, layer in enumerate(encoder.feature_extractor.conv_layers):
            if i == 0 and self.group_norm:
                hidden = self._masked_group_norm_layer(layer, hidden, lengths)
            else:
                hidden = layer(hidden)
        return hidden

    def _masked_group_norm_layer(
        self, layer: Any, x: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """conv -> GroupNorm(C, C) with per-clip statistics over real positions -> activation."""
        y = layer.conv(x)  # (B, C, F0)
        norm: nn.GroupNorm = layer.layer_norm
        real = conv_output_lengths(lengths, self.kernels[:1], self.strides[:1])
        positions = torch.ones_like(y[:1, :1, :], dtype=torch.int64).cumsum(dim=2) - 1
        inside = positions < real[:, None, None]  # (B, 1, F0)
        n = inside.to(y.dtype).sum(dim=2, keepdim=True).clamp(min=1.0)
        mean = torch.where(inside, y, torch.zeros_like(y)).sum(dim=2, keepdim=True) / n
        centred = torch.where(inside, y - mean, torch.zeros_like(y))
        var = (centred * centred).sum(dim=2, keepdim=True) / n
        y = (y - mean) / torch.sqrt(var + norm.eps)
        if norm.affine:
            y = y * norm.weight[None, :, None] + norm.bias[None, :, None]
        out: torch.Tensor = layer.activation(y)
        return out


class AudioClassifierModel(AudioEmbeddingModel):
    """A fine-tuned speech classifier as an audio classifier bundle serves it: the embedding of
    :class:`AudioEmbeddingModel` and the softmax of a linear head on the pooled features.

    The head reads the mean over real frames *before* the L2 normalisation, as ssl-train's
    ``EncoderClassifier`` applies ``head(encoder(x))`` to ``SpeechEncoder``'s pooled output;
    its batch norm (eval mode) is folded into ``head_weight`` and ``head_bias``.

    Args:
        encoder: As for :class:`AudioEmbeddingModel`.
        head_weight: ``(K, D) float32`` the head's folded weight.
        head_bias: ``(K,) float32`` its folded bias.
        normalize: Normalise each clip's waveform over its real samples first.
        pooling: "mean" (over real frames).
        eps: Lower bound on the norm divided by in the L2 normalisation.

    Shape:
        Inputs as :class:`AudioEmbeddingModel`; outputs ``embedding (B, D) float32`` rows of
        unit norm and ``probabilities (B, K) float32`` rows summing to 1.

    Raises:
        ValueError: As :class:`AudioEmbeddingModel`, or a head whose shape does not fit
            ``(K, D)``, ``(K,)`` with ``D = hidden_size`` and ``K >= 2``.

    Attributes:
        num_classes: K.
    """

    head_weight: torch.Tensor
    head_bias: torch.Tensor

    def __init__(
        self,
        encoder: nn.Module,
        head_weight: torch.Tensor,
        head_bias: torch.Tensor,
        *,
        normalize: bool,
        pooling: str = "mean",
        eps: float = NORM_EPS,
    ) -> None:
        super().__init__(encoder, normalize=normalize, pooling=pooling, eps=eps)
        k = head_weight.shape[0]
        if head_weight.shape != (k, self.output_dim) or head_bias.shape != (k,) or k < 2:
            raise ValueError(
                f"head weight {tuple(head_weight.shape)} and bias {tuple(head_bias.shape)} do "
                f"not fit (K, {self.output_dim}) and (K,) with K >= 2"
            )
        self.num_classes = int(k)
        self.register_buffer("head_weight", head_weight.detach().float().clone())
        self.register_buffer("head_bias", head_bias.detach().float().clone())

    @property
    def output_names(self) -> tuple[str, ...]:
        """``("embedding", "probabilities")``, the order :meth:`forward` returns them in."""
        return (OUTPUT_NAME, PROBABILITIES_OUTPUT)

    def forward(  # type: ignore[override]
        self, input_values: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.pooled(input_values, attention_mask)
        embedding = F.normalize(features, p=2.0, dim=1, eps=self.eps)
        logits = features @ self.head_weight.T + self.head_bias
        return embedding, torch.softmax(logits, dim=1)


def export_audio_onnx(
    model: AudioEmbeddingModel,
    example: Sequence[torch.Tensor],
    path: Path,
    *,
    opset: int = 17,
) -> None:
    """Export ``model`` in eval mode with dynamic batch and samples axes, and check the file.

    Uses the legacy exporter (``dynamo=False``), fast and without onnxscript.

    Args:
        model: The audio embedding model; put in eval mode here.
        example: ``input_values (b, t) float32`` and ``attention_mask (b, t) int64``; the
            example should hold padding, so masking is traced with real values; validate at
            other batch sizes and lengths to prove both axes are dynamic.
        path: The ``.onnx`` file to write (a single file, no external data).
        opset: ONNX opset version.

    Raises:
        onnx.checker.ValidationError: The written model is not valid ONNX.
    """
    export_padded_inputs_onnx(model, example, path, axis="samples", opset=opset)
