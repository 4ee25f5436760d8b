"""The wav2vec 2.0 speech encoder (convolutional feature encoder + transformer), correct for
padded batches of raw waveforms of different lengths."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ssl_models.speech.pooling import mean_pool_frames


class SpeechFrames(NamedTuple):
    """Frame-level outputs of :meth:`SpeechEncoder.frames` for a batch of B clips, F frames.

    Attributes:
        hidden: ``(B, F, hidden_size) float32`` transformer outputs (context vectors c_t).
        features: ``(B, F, conv_dim[-1]) float32`` layer-normed convolutional features z_t, before
            the projection and before masking (the wav2vec 2.0 quantiser's input).
        frame_mask: ``(B, F) bool``, True on real frames, False on padding.
    """

    hidden: torch.Tensor
    features: torch.Tensor
    frame_mask: torch.Tensor


class SpeechEncoder(nn.Module):
    """wav2vec 2.0 encoder: a 7-layer 1-D convolutional feature encoder (20 ms frames at 16 kHz
    with the default strides, 25 ms receptive field) followed by a transformer with convolutional
    relative position embeddings. The pooled output is the mean of the final-layer frames over
    each clip's real (unpadded) length.

    The network is transformers' ``Wav2Vec2Model`` built from a ``Wav2Vec2Config`` (random
    weights, nothing downloaded). The feature encoder uses ``feat_extract_norm="layer"``: a
    LayerNorm over channels per frame. The original base model's ``"group"`` norm normalises
    every channel over time *including the padding*, so a clip's features would depend on the
    batch it is padded into; it is refused. With layer norm, padded frames zeroed before the
    position convolution and masked out of attention, a clip's real frames (and pooled embedding)
    are the same alone and inside a padded batch (to float rounding).

    Input contract: ``input_values`` are raw mono waveforms at the rate the strides were chosen
    for (16 kHz for the defaults), normalised per utterance to zero mean and unit variance over
    the real samples (wav2vec 2.0's feature extractor does this; the data side should), and
    zero-padded on the right; ``lengths`` are the real lengths in samples.

    Args:
        hidden_size: Transformer width.
        num_layers: Transformer blocks.
        num_heads: Attention heads (must divide ``hidden_size``).
        intermediate_size: Feed-forward width; default ``4 * hidden_size``.
        conv_dim: Channels of each convolution of the feature encoder.
        conv_kernel: Kernel of each convolution, in samples then frames.
        conv_stride: Stride of each convolution.
        num_conv_pos_embeddings: Kernel of the position convolution (frames).
        num_conv_pos_embedding_groups: Groups of the position convolution.
        dropout: Dropout on the transformer's hidden states, attention and projection.
        layerdrop: Probability of skipping a transformer layer while training.
        **config_overrides: Any other ``Wav2Vec2Config`` field.

    Shape:
        ``forward(input_values (B, T) float32, lengths (B,) int64 samples)`` ->
        ``(B, hidden_size) float32``. ``output_dim == hidden_size``.

    Raises:
        ValueError: Bad sizes, or ``feat_extract_norm="group"`` (at construction); bad input
            shapes or lengths (at forward, see :meth:`frames`).

    Reference: Baevski et al., "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech
    Representations", arXiv:2006.11477.
    """

    def __init__(
        self,
        hidden_size: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        intermediate_size: int | None = None,
        conv_dim: Sequence[int] = (512, 512, 512, 512, 512, 512, 512),
        conv_kernel: Sequence[int] = (10, 3, 3, 3, 3, 2, 2),
        conv_stride: Sequence[int] = (5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings: int = 128,
        num_conv_pos_embedding_groups: int = 16,
        dropout: float = 0.1,
        layerdrop: float = 0.0,
        **config_overrides: Any,
    ) -> None:
        super().__init__()
        if config_overrides.get("feat_extract_norm", "layer") != "layer":
            raise ValueError(
                f"feat_extract_norm={config_overrides['feat_extract_norm']!r} is not supported: "
                "'group' normalises over time including padding, so embeddings would depend on "
                "the batch; use 'layer'"
            )
        if not (len(conv_dim) == len(conv_kernel) == len(conv_stride) >= 1):
            raise ValueError(
                f"conv_dim, conv_kernel and conv_stride need the same length >= 1, got "
                f"{len(conv_dim)}, {len(conv_kernel)}, {len(conv_stride)}"
            )
        if min(hidden_size, num_layers, num_heads, *conv_dim, *conv_kernel, *conv_stride) < 1:
            raise ValueError("every size, kernel and stride must be >= 1")
        if hidden_size % num_heads or hidden_size % num_conv_pos_embedding_groups:
            raise ValueError(
                f"num_heads={num_heads} and num_conv_pos_embedding_groups="
                f"{num_conv_pos_embedding_groups} must divide hidden_size={hidden_size}"
            )
        # Imported here so that `import ssl_models` stays fast for users of the losses alone.
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        config_overrides.pop("feat_extract_norm", None)
        self.config = Wav2Vec2Config(
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=intermediate_size or 4 * hidden_size,
            conv_dim=list(conv_dim),
            conv_kernel=list(conv_kernel),
            conv_stride=list(conv_stride),
            feat_extract_norm="layer",
            conv_bias=True,
            do_stable_layer_norm=True,
            num_conv_pos_embeddings=num_conv_pos_embeddings,
            num_conv_pos_embedding_groups=num_conv_pos_embedding_groups,
            hidden_dropout=dropout,
            attention_dropout=dropout,
            activation_dropout=0.0,
            feat_proj_dropout=dropout,
            layerdrop=layerdrop,
            # > 0 only so that the model owns the learned mask embedding; masks always come
            # from the caller (mask_time_indices), never from transformers' own sampler.
            mask_time_prob=0.05,
            mask_feature_prob=0.0,
            **config_overrides,
        )
        self.wav2vec2 = Wav2Vec2Model(self.config)
        self.hidden_size = hidden_size
        self.feature_dim = conv_dim[-1]
        self.output_dim = hidden_size
        self._kernels = tuple(conv_kernel)
        self._strides = tuple(conv_stride)

    @property
    def samples_per_frame(self) -> int:
        """Hop between consecutive frames, in samples (320 = 20 ms at 16 kHz by default)."""
        hop = 1
        for s in self._strides:
            hop *= s
        return hop

    @property
    def receptive_field(self) -> int:
        """Samples seen by one frame (400 = 25 ms at 16 kHz by default); shorter clips have no
        frame."""
        field, hop = 1, 1
        for k, s in zip(self._kernels, self._strides, strict=True):
            field += (k - 1) * hop
            hop *= s
        return field

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames the feature encoder makes from clips of ``lengths`` samples.

        Each valid (unpadded) convolution maps L to ``floor((L - kernel) / stride) + 1``, so the
        frames of a clip see only its real samples. The data side uses this to size the span
        mask (``mask_time_indices``) of a batch: ``F = num_frames(max length)``.

        Args:
            lengths: ``(B,)`` integer lengths in samples (any integer dtype).

        Returns:
            ``(B,) int64`` frame counts (0 for clips shorter than :attr:`receptive_field`).
        """
        n = lengths.to(torch.int64)
        for k, s in zip(self._kernels, self._strides, strict=True):
            n = torch.div(n - k, s, rounding_mode="floor") + 1
        return n.clamp(min=0)

    def frames(
        self,
        input_values: torch.Tensor,
        lengths: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
    ) -> SpeechFrames:
        """Frame-level features of a padded batch; masked frames' transformer inputs are replaced
        by the learned mask embedding (wav2vec 2.0 / HuBERT masking).

        Args:
            input_values: ``(B, T) float32`` waveforms, zero-padded on the right.
            lengths: ``(B,)`` integer real lengths in samples, each in
                ``[receptive_field, T]``; default all ``T``.
            mask_time_indices: ``(B, F) bool``, True = masked, only on real frames; default none.

        Returns:
            :class:`SpeechFrames` with ``F = num_frames(T)``.

        Raises:
            ValueError: ``input_values`` not 2-D; ``lengths`` not ``(B,)`` or a length outside
                ``[receptive_field, T]``; ``mask_time_indices`` not ``(B, F)`` or True on a
                padded frame.
        """
        if input_values.ndim != 2:
            raise ValueError(f"input_values must be (B, T), got {tuple(input_values.shape)}")
        b, t = input_values.shape
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.int64, device=input_values.device)
        lengths = lengths.to(device=input_values.device, dtype=torch.int64)
        if lengths.shape != (b,):
            raise ValueError(f"lengths must be ({b},), got {tuple(lengths.shape)}")
        bad = (lengths < self.receptive_field) | (lengths > t)
        if bad.any():
            i = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"lengths[{i}]={int(lengths[i])} samples is outside [{self.receptive_field}, {t}] "
                f"(the receptive field of one frame, and the padded length)"
            )
        num_frames = int(self.num_frames(torch.tensor([t]))[0])
        frame_mask = (
            torch.arange(num_frames, device=lengths.device) < self.num_frames(lengths)[:, None]
        )
        if mask_time_indices is None:
            mask = torch.zeros(b, num_frames, dtype=torch.bool, device=input_values.device)
        else:
            mask = mask_time_indices.to(device=input_values.device, dtype=torch.bool)
            if mask.shape != (b, num_frames):
                raise ValueError(
                    f"mask_time_indices must be ({b}, {num_frames}) for {t} samples, got "
                    f"{tuple(mask.shape)}"
                )
            if (mask & ~frame_mask).any():
                i = int((mask & ~frame_mask).any(dim=1).nonzero()[0, 0])
                raise ValueError(
                    f"mask_time_indices[{i}] masks padded frames (real frames: "
                    f"{int(frame_mask[i].sum())})"
                )
        sample_mask = torch.arange(t, device=lengths.device) < lengths[:, None]
        out = self.wav2vec2(input_values, attention_mask=sample_mask.long(), mask_time_indices=mask)
        hidden = out.last_hidden_state.masked_fill(~frame_mask[..., None], 0.0)
        return SpeechFrames(hidden, out.extract_features, frame_mask)

    def forward(
        self, input_values: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Utterance embeddings: final-layer frames averaged over each clip's real frames.

        Args:
            input_values: ``(B, T) float32`` waveforms, zero-padded on the right.
            lengths: ``(B,)`` real lengths in samples; default all ``T``.

        Returns:
            ``(B, hidden_size) float32``.

        Raises:
            ValueError: See :meth:`frames`.
        """
        f = self.frames(input_values, lengths)
        return mean_pool_frames(f.hidden, f.frame_mask)


__all__ = ["SpeechEncoder", "SpeechFrames"]
