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

#: Gumbel temperature decay per optimiser step in the paper (2 -> 0.5 over 277k steps).
PAPER_GUMBEL_TEMPERATURE_DECAY = 0.999995
#: :meth:`Wav2Vec2.collapse_warning` fires at or below this many codewords per codebook
#: (perplexity / G); a collapsed quantiser sits at 1.
COLLAPSED_PERPLEXITY_PER_CODEBOOK = 1.5


class Wav2Vec2(SSLMethod):
    """Mask spans of the latent speech frames, and pick each masked frame's true quantised
    latent among K distractors from other masked frames of the same utterance, from the
    transformer's output there; plus a codebook diversity term: ``L = L_m + alpha * L_d``.

    The quantiser is transformers' ``Wav2Vec2GumbelVectorQuantizer`` (G codebooks of V entries,
    straight-through Gumbel-softmax on the unmasked convolutional features, codewords
    concatenated). Its Gumbel temperature is annealed per optimiser step by
    :meth:`after_optimizer_step`: ``max(max_temp * decay ** step, min_temp)`` (paper: 2 -> 0.5,
    decay 0.999995, which reaches 0.5 after 277k of its 400k steps), or, with
    ``gumbel_anneal_fraction`` f, geometrically from ``max_temp`` to ``min_temp`` at step
    ``f * total_steps``, so the schedule follows the run's length. A short run on the paper's
    per-step decay never anneals; one that reaches the floor early can collapse to one codeword
    per codebook (:meth:`collapse_warning`). ``L_m`` is averaged over the anchors and ``L_d`` is
    computed on the codeword distribution averaged over the batch's real (unpadded) frames. The detached terms
    of the last call are in :attr:`last_loss_terms` (``contrastive``, ``diversity``,
    ``perplexity``, ``gumbel_temperature``), which the trainer logs
    (:meth:`training_diagnostics`). Distractors come from the same utterance, so no
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
        gumbel_temperature_decay: Factor per optimiser step (paper: 0.999995, the default
            when ``gumbel_anneal_fraction`` is not set).
        gumbel_anneal_fraction: Fraction of the run's optimiser steps after which the
            temperature reaches ``min_gumbel_temperature`` (in (0, 1]); replaces the per-step
            decay.
        feature_dropout: Dropout on the features entering the quantiser.

    Raises:
        TypeError: ``encoder`` is not a ``SpeechEncoder``.
        ValueError: A size, weight or temperature out of range, or both
            ``gumbel_temperature_decay`` and ``gumbel_anneal_fraction`` set.

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
        gumbel_temperature_decay: float | None = None,
        gumbel_anneal_fraction: float | None = None,
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
        if gumbel_temperature_decay is not None and gumbel_anneal_fraction is not None:
            raise ValueError(
                "set gumbel_temperature_decay (a factor per step) or gumbel_anneal_fraction (a "
                "fraction of the run), not both"
            )
        if gumbel_anneal_fraction is None and gumbel_temperature_decay is None:
            gumbel_temperature_decay = PAPER_GUMBEL_TEMPERATURE_DECAY
        if not 0 < min_gumbel_temperature <= max_gumbel_temperature:
            raise ValueError(
                f"need 0 < min_gumbel_temperature <= max_gumbel_temperature, got "
                f"{min_gumbel_temperature}, {max_gumbel_temperature}"
            )
        if gumbel_temperature_decay is not None and not 0 < gumbel_temperature_decay <= 1:
            raise ValueError(
                f"gumbel_temperature_decay must be in (0, 1], got {gumbel_temperature_decay}"
            )
        if gumbel_anneal_fraction is not None and not 0 < gumbel_anneal_fraction <= 1:
            raise ValueError(
                f"gumbel_anneal_fraction must be in (0, 1], got {gumbel_anneal_fraction}"
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
        self.gumbel_anneal_fraction = gumbel_anneal_fraction
        self.last_loss_terms: dict[str, torch.Tensor] = {}

    @property
    def gumbel_temperature(self) -> float:
        """The quantiser's current Gumbel-softmax temperature."""
        return float(self.quantizer.temperature)

    def gumbel_temperature_at(self, step: int, total_steps: int) -> float:
        """The Gumbel temperature after ``step`` of ``total_steps`` optimiser steps:
        ``max(max_temp * decay ** step, min_temp)``, or with ``gumbel_anneal_fraction`` f,
        ``max_temp * (min_temp / max_temp) ** min(1, step / (f * total_steps))``.

        Raises:
            ValueError: ``step`` < 0 or ``total_steps`` < 1.
        """
        if step < 0 or total_steps < 1:
            raise ValueError(f"need step >= 0 and total_steps >= 1, got {step}, {total_steps}")
        hi, lo = self.max_gumbel_temperature, self.min_gumbel_temperature
        if self.gumbel_anneal_fraction is not None:
            progress = min(1.0, step / (self.gumbel_anneal_fraction * total_steps))
            return hi * (lo / hi) ** progress
        assert self.gumbel_temperature_decay is not None
        return max(hi * self.gumbel_temperature_decay**step, lo)

    def after_optimizer_step(self, step: int, total_steps: int) -> None:
        """Anneal the Gumbel temperature (:meth:`gumbel_temperature_at`)."""
        self.quantizer.temperature = self.gumbel_temperature_at(step, total_steps)

    def training_diagnostics(self) -> dict[str, float]:
        """The last call's ``contrastive`` and ``diversity`` terms, codebook ``perplexity``
        (in ``[G, G * V]``) and ``gumbel_temperature``; empty before the first call."""
        return {k: float(v) for k, v in self.last_loss_terms.items()}

    def collapse_warning(self) -> str | None:
        """A message when the last batch's codebook perplexity is at most
        :data:`COLLAPSED_PERPLEXITY_PER_CODEBOOK` per codebook: every frame quantises to (about)
        the same codewords, so each distractor equals its positive, is dropped, and the
        contrastive term stops giving gradient while the loss sits near ``alpha (1 - 1/V)``."""
        perplexity = self.last_loss_terms.get("perplexity")
        if (
            perplexity is None
            or float(perplexity) > COLLAPSED_PERPLEXITY_PER_CODEBOOK * self.num_groups
        ):
            return None
        return (
            f"wav2vec 2.0 codebook collapse: perplexity {float(perplexity):.2f} of "
            f"{self.num_groups * self.num_vars} codewords ({self.num_groups} codebooks x "
            f"{self.num_vars}); every frame quantises to the same codewords and the contrastive "
            f"term gives no gradient. Anneal the Gumbel temperature over more of the run "
            f"(method.gumbel_anneal_fraction, now {self.gumbel_anneal_fraction}), raise "
            f"method.diversity_weight (now {self.diversity_weight}) or lower optimizer.lr"
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
