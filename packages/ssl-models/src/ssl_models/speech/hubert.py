"""HuBERT masked prediction of discrete targets (Hsu et al., 2021, arXiv:2106.07447)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ssl_models.methods.base import SSLMethod
from ssl_models.speech.encoder import SpeechEncoder
from ssl_models.speech.masked_prediction_loss import cluster_logits, masked_prediction_loss


class HuBERT(SSLMethod):
    """Mask spans of the latent speech frames and predict, from the transformer's output, the
    k-means cluster of every masked frame's acoustic features (BERT-like masked prediction of
    hidden units).

    The transformer output o_t is projected (A) to the label-embedding width, and the logit of
    cluster c is ``cos(A o_t, e_c) / tau`` with one learned embedding e_c per cluster. The loss
    is :func:`~ssl_models.speech.masked_prediction_loss.masked_prediction_loss`.

    Batch contract (``views``):

    1. ``input_values``: ``(B, T) float32`` waveforms, normalised per utterance, zero-padded.
    2. ``lengths``: ``(B,) int64`` real lengths in samples.
    3. ``mask_time_indices``: ``(B, F) bool`` span mask on real frames (as for
       :class:`~ssl_models.speech.wav2vec2.Wav2Vec2`; HuBERT: mask_prob 0.8, span 10).
    4. ``targets``: ``(B, F) int64`` cluster ids aligned to the encoder's frames
       (:func:`~ssl_models.speech.kmeans_targets.align_labels_to_frames` per utterance, padded
       with -100).

    Args:
        encoder: A :class:`~ssl_models.speech.encoder.SpeechEncoder`.
        num_clusters: C, the k-means clusters of the targets (100 for MFCC targets).
        embedding_dim: Width of the projection and the label embeddings (256).
        temperature: tau of the cosine logits (0.1).
        masked_weight: alpha; ``alpha * L_m + (1 - alpha) * L_u`` (1.0: masked frames only).

    Raises:
        TypeError: ``encoder`` is not a ``SpeechEncoder``.
        ValueError: A size, temperature or weight out of range.

    Reference: Hsu et al., "HuBERT: Self-Supervised Speech Representation Learning by Masked
    Prediction of Hidden Units", arXiv:2106.07447.
    """

    num_views = 4

    def __init__(
        self,
        encoder: nn.Module,
        num_clusters: int = 100,
        embedding_dim: int = 256,
        temperature: float = 0.1,
        masked_weight: float = 1.0,
    ) -> None:
        if not isinstance(encoder, SpeechEncoder):
            raise TypeError(f"HuBERT needs a SpeechEncoder, got {type(encoder).__name__}")
        super().__init__(encoder)
        if num_clusters < 2 or embedding_dim < 1:
            raise ValueError(
                f"need num_clusters >= 2 and embedding_dim >= 1, got {num_clusters}, "
                f"{embedding_dim}"
            )
        if temperature <= 0 or not 0.0 <= masked_weight <= 1.0:
            raise ValueError(
                f"need temperature > 0 and masked_weight in [0, 1], got {temperature}, "
                f"{masked_weight}"
            )
        self.final_projection = nn.Linear(encoder.hidden_size, embedding_dim)
        self.label_embeddings = nn.Parameter(torch.randn(num_clusters, embedding_dim))
        self.num_clusters = num_clusters
        self.temperature = temperature
        self.masked_weight = masked_weight

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Cluster logits ``(B, F, C) float32`` of transformer outputs ``(B, F, hidden_size)``."""
        return cluster_logits(
            self.final_projection(hidden), self.label_embeddings, self.temperature
        )

    def training_loss(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """Masked prediction loss on a padded batch (see the class docstring for ``views``).

        Args:
            views: ``[input_values (B, T) float32, lengths (B,) int64, mask_time_indices
                (B, F) bool, targets (B, F) int64]``.

        Returns:
            Scalar float32 loss.

        Raises:
            ValueError: Wrong number of views, bad shapes or lengths, a mask on padding, a target
                on padding or outside ``[0, num_clusters)``.
        """
        self._check_views(views)
        input_values, lengths, mask_time_indices, targets = views
        encoder: SpeechEncoder = self.encoder  # type: ignore[assignment]
        frames = encoder.frames(input_values, lengths, mask_time_indices)
        targets = targets.to(device=input_values.device, dtype=torch.long)
        if targets.shape != frames.frame_mask.shape:
            raise ValueError(
                f"targets must be {tuple(frames.frame_mask.shape)}, got {tuple(targets.shape)}"
            )
        if ((targets != -100) & ~frames.frame_mask).any():
            raise ValueError("targets must be -100 on padded frames")
        return masked_prediction_loss(
            self.logits(frames.hidden),
            targets,
            mask_time_indices.to(device=input_values.device),
            self.masked_weight,
        )

    def embed(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Utterance embeddings ``(B, hidden_size)``: frames averaged over the real length.

        Args:
            x: ``(B, T) float32`` waveforms, zero-padded.
            lengths: ``(B,)`` real lengths in samples; default all ``T``.
        """
        return self.encoder(x, lengths)


__all__ = ["HuBERT"]
