"""wav2vec 2.0 pretraining (Baevski et al., 2020, arXiv:2006.11477)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ssl_models.methods.base import SSLMethod
from ssl_models.speech.contrastive_loss import wav2vec2_contrastive_loss
from ssl_models.speech.diversity_loss import codebook_diversity_loss, codebook_perplexity
from ssl_models.speech.encoder import SpeechEncoder
from ssl_models.speech.negative_sampling import sample_negative_indices


class Wav2Vec2(SSLMethod):
    """Mask spans of the latent speech frames, and pick each masked frame's true quantised
    latent among K distractors from other masked frames of the same utterance, from the
    transformer's output there; plus a codebook diversity term: ``L = L_m + alpha * L_d``.

    The quantiser is transformers' ``Wav2Vec2GumbelVectorQuantizer`` (G codebooks of V entries,
    straight-through Gumbel-softmax on the unmasked convolutional features, codewords
    concatenated). Its Gumbel temperature is annealed per optimiser step by
    :meth:`after_optimizer_step`: ``max(max_temp * decay ** step, min_temp)`` (paper: 2 -> 0.5,
    decay 0.999995). ``L_m`` is averaged over the anchors and ``L_d`` is computed on the
    codeword distribution averaged over the batch's real (unpadded) frames. The detached terms
    of the last call are in :attr:`last_loss_terms` (``contrastive``, ``diversity``,
    ``perplexity``, ``gumbel_temperature``). Distractors come from the same utterance, so no
    cross-rank gathering is needed under DDP; ``L_d`` uses each rank's own batch, as in the
    reference implementation. The reference code's extra L2 penalty on the convolutional
    features is not included.

    Batch contract (``views``, produced by the data side, e.g. ssl-data's speech views):

    1. ``input_values``: ``(B, T) float32`` waveforms, normalised per utterance, zero-padded.
    2. ``lengths``: ``(B,) int64`` real lengths in samples.
    3. ``mask_time_indices``: ``(B, F) bool`` span mask over the encoder's frames, True =
       masked, never on padding, with ``F = encoder.num_frames(T)`` and each utterance's real
       frames ``encoder.num_frames(lengths)`` (ssl-data's ``compute_span_mask`` with these
       lengths: mask_prob 0.65, span 10 in the paper). Utterances with fewer than 2 masked frames
       contribute only to ``L_d``.

    Args:
        encoder: A :class:`~ssl_models.speech.encoder.SpeechEncoder`.
        num_negatives: K distractors per masked frame (100 in the paper).
        contrastive_temperature: kappa (0.1).
        diversity_weight: alpha (0.1).
        num_codevector_groups: G codebooks (2).
        num_codevectors_per_group: V entries per codebook (320).
        codevector_dim: Width of a quantised vector (all G codewords concatenated; 256 in the
            base model's reference config); divisible by G.
        proj_codevector_dim: Width of the space where ``c_t`` and ``q_t`` are compared.
        max_gumbel_temperature: Gumbel temperature at step 0 (2.0).
        min_gumbel_temperature: Its floor (0.5).
        gumbel_temperature_decay: Factor per optimiser step (0.999995).
        feature_dropout: Dropout on the features entering the quantiser.

    Raises:
        TypeError: ``encoder`` is not a ``SpeechEncoder``.
        ValueError: A size, weight or temperature out of range.

    Reference: Baevski et al., "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech
    Representations", arXiv:2006.11477, sections 2-3.
    """

    num_views = 3

    def __init__(
        self,
        encoder: nn.Module,
        num_negatives: int = 100,
        contrastive_temperature: float = 0.1,
        diversity_weight: float = 0.1,
        num_codevector_groups: int = 2,
        num_codevectors_per_group: int = 320,
        codevector_dim: int = 256,
        proj_codevector_dim: int = 256,
        max_gumbel_temperature: float = 2.0,
        min_gumbel_temperature: float = 0.5,
        gumbel_temperature_decay: float = 0.999995,
        feature_dropout: float = 0.0,
    ) -> None:
        if not isinstance(encoder, SpeechEncoder):
            raise TypeError(f"Wav2Vec2 needs a SpeechEncoder, got {type(encoder).__name__}")
        super().__init__(encoder)
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        if contrastive_temperature <= 0 or diversity_weight < 0:
            raise ValueError(
                f"contrastive_temperature must be > 0 and diversity_weight >= 0, got "
                f"{contrastive_temperature}, {diversity_weight}"
            )
        if min(num_codevector_groups, num_codevectors_per_group, proj_codevector_dim) < 1:
            raise ValueError("codebook sizes must be >= 1")
        if codevector_dim % num_codevector_groups:
            raise ValueError(
                f"num_codevector_groups={num_codevector_groups} must divide "
                f"codevector_dim={codevector_dim}"
            )
        if not 0 < min_gumbel_temperature <= max_gumbel_temperature or not (
            0 < gumbel_temperature_decay <= 1
        ):
            raise ValueError(
                f"need 0 < min_gumbel_temperature <= max_gumbel_temperature and 0 < decay <= 1, "
                f"got {min_gumbel_temperature}, {max_gumbel_temperature}, "
                f"{gumbel_temperature_decay}"
            )
        from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2GumbelVectorQuantizer

        config = copy.deepcopy(encoder.config)
        config.num_codevector_groups = num_codevector_groups
        config.num_codevectors_per_group = num_codevectors_per_group
        config.codevector_dim = codevector_dim
        self.quantizer = Wav2Vec2GumbelVectorQuantizer(config)
        # transformers initialises these in PreTrainedModel._init_weights, not in the module
        nn.init.uniform_(self.quantizer.codevectors)
        nn.init.normal_(self.quantizer.weight_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.quantizer.weight_proj.bias)
        self.quantizer.temperature = max_gumbel_temperature
        self.feature_dropout = nn.Dropout(feature_dropout)
        self.project_hid = nn.Linear(encoder.hidden_size, proj_codevector_dim)
        self.project_q = nn.Linear(codevector_dim, proj_codevector_dim)
        self.num_negatives = num_negatives
        self.contrastive_temperature = contrastive_temperature
        self.diversity_weight = diversity_weight
        self.num_groups = num_codevector_groups
        self.num_vars = num_codevectors_per_group
        self.max_gumbel_temperature = max_gumbel_temperature
        self.min_gumbel_temperature = min_gumbel_temperature
        self.gumbel_temperature_decay = gumbel_temperature_decay
        self.last_loss_terms: dict[str, torch.Tensor] = {}

    @property
    def gumbel_temperature(self) -> float:
        """The quantiser's current Gumbel-softmax temperature."""
        return float(self.quantizer.temperature)

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Anneal the Gumbel temperature: ``max(max_temp * decay ** step, min_temp)``."""
        self.quantizer.temperature = max(
            self.max_gumbel_temperature * self.gumbel_temperature_decay**step,
            self.min_gumbel_temperature,
        )

    def training_loss(
        self, views: Sequence[torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``L_m + alpha * L_d`` on a padded batch (see the class docstring for ``views``).

        Args:
            views: ``[input_values (B, T) float32, lengths (B,) int64, mask_time_indices (B, F)
                bool]``.
            generator: Optional torch generator for the distractor draws.

        Returns:
            Scalar float32 loss.

        Raises:
            ValueError: Wrong number of views, bad shapes or lengths, a mask on padding (see
                :meth:`SpeechEncoder.frames`), or no utterance with 2 masked frames.
        """
        self._check_views(views)
        input_values, lengths, mask_time_indices = views
        encoder: SpeechEncoder = self.encoder  # type: ignore[assignment]
        frames = encoder.frames(input_values, lengths, mask_time_indices)
        mask = mask_time_indices.to(device=input_values.device, dtype=torch.bool)
        features = self.feature_dropout(frames.features)
        quantized, _ = self.quantizer(features, mask_time_indices=frames.frame_mask)
        b, f, _ = features.shape
        logits = self.quantizer.weight_proj(features).float()
        probs = torch.softmax(logits.view(b * f, self.num_groups, self.num_vars), dim=-1)
        perplexity = codebook_perplexity(probs, frames.frame_mask.reshape(-1))
        diversity = codebook_diversity_loss(perplexity, self.num_groups, self.num_vars)
        negatives = sample_negative_indices(mask, self.num_negatives, generator=generator)
        contrastive = wav2vec2_contrastive_loss(
            self.project_hid(frames.hidden),
            self.project_q(quantized),
            negatives,
            self.contrastive_temperature,
        )
        self.last_loss_terms = {
            "contrastive": contrastive.detach(),
            "diversity": diversity.detach(),
            "perplexity": perplexity.detach(),
            "gumbel_temperature": torch.tensor(self.gumbel_temperature),
        }
        return contrastive + self.diversity_weight * diversity

    def embed(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Utterance embeddings ``(B, hidden_size)``: the transformer's frames averaged over
        each clip's real length (no masking).

        Args:
            x: ``(B, T) float32`` waveforms, zero-padded.
            lengths: ``(B,)`` real lengths in samples; default all ``T``.
        """
        return self.encoder(x, lengths)


__all__ = ["Wav2Vec2"]
