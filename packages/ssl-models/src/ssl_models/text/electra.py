"""ELECTRA replaced-token detection (Clark et al., 2020, arXiv:2003.10555)."""

from __future__ import annotations

from typing import Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from ssl_models import distributed
from ssl_models.losses._precision import float32_region, upcast
from ssl_models.text._seeding import keyed_generator
from ssl_models.text.base import IGNORE_INDEX, TextBatch, TextSSLMethod
from ssl_models.text.lm_head import TiedLMHead


class _ElectraEncoder(Protocol):
    hidden_size: int
    word_embeddings: nn.Embedding

    def embed_tokens(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor: ...

    def forward_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor: ...


def discriminator_labels(
    corrupted: torch.Tensor, original: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """ELECTRA's targets: 1 where a real token differs from the original, else 0.

    A sampled token that happens to equal the original counts as original (the paper's
    section 2), so labels come from comparing ids, not from which positions were masked.

    Args:
        corrupted: ``(B, L) int64`` ids after the generator's replacements.
        original: ``(B, L) int64`` ids before masking.
        attention_mask: ``(B, L)``, nonzero = real token (padding is labelled 0).

    Returns:
        ``(B, L) float32`` in {0, 1}.
    """
    return ((corrupted != original) & attention_mask.bool()).float()


class ELECTRA(TextSSLMethod):
    """A small MLM generator fills the masked positions with samples; the discriminator (the
    encoder) tells, for every real token, whether it was replaced.

    The generator reads the discriminator's embedding layer (token, position and segment
    embeddings shared, as the paper does), projects it to its own width, runs
    ``generator_layers`` post-norm transformer blocks, and predicts tokens through a head tied to
    the shared token embeddings. Replacements are sampled from its softmax without gradient (the
    generator trains by MLM only); the sampling is keyed by ``(seed, rank, call counter)``, with
    the counter in the state dict. Loss = ``MLM_generator + discriminator_weight * BCE``, the MLM
    mean over masked tokens, the BCE mean over real tokens.

    Args:
        encoder: The discriminator, a :class:`~ssl_models.text.BertEncoder` (needs
            ``embed_tokens``, ``word_embeddings``, ``hidden_size``).
        generator_hidden_size: Generator width (default a quarter of the discriminator's, the
            paper's best ratio); heads = max(1, width // 64).
        generator_layers: Generator blocks (default: the discriminator's layer count when known,
            else 2).
        discriminator_weight: lambda (50 in the paper).
        seed: Seed of the replacement sampling.
        pooling: Sentence-embedding pooling for :meth:`embed` (None keeps the encoder's).

    Batch:
        ``input_ids (B, L) int64`` already masked (ssl-data's ``MLMMasking``, e.g. with
        ``mask_replace_probability=1.0`` as in ELECTRA), ``attention_mask (B, L)``,
        ``labels (B, L) int64`` (the original id at masked positions, -100 elsewhere).

    Raises:
        TypeError: The encoder lacks ``embed_tokens`` / ``word_embeddings``.
        ValueError: A width below 1.

    Reference: Clark et al., "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than
    Generators", arXiv:2003.10555, sections 2 and 3.2.
    """

    sample_calls: torch.Tensor

    def __init__(
        self,
        encoder: nn.Module,
        generator_hidden_size: int | None = None,
        generator_layers: int | None = None,
        discriminator_weight: float = 50.0,
        seed: int = 0,
        pooling: str | None = None,
    ) -> None:
        super().__init__(encoder, pooling)
        if not callable(getattr(encoder, "embed_tokens", None)) or not isinstance(
            getattr(encoder, "word_embeddings", None), nn.Embedding
        ):
            raise TypeError(
                f"ELECTRA needs a BertEncoder-like discriminator (embed_tokens, word_embeddings), "
                f"got {type(encoder).__name__}"
            )
        width = self._disc.word_embeddings.embedding_dim
        hidden = generator_hidden_size or max(1, self.embedding_dim // 4)
        layers = generator_layers or int(
            getattr(getattr(encoder, "config", None), "num_hidden_layers", 2)
        )
        if min(hidden, layers) < 1:
            raise ValueError(f"generator sizes must be >= 1, got {hidden} wide, {layers} layers")
        heads = max(1, hidden // 64)
        if hidden % heads:
            heads = 1
        self.generator_project = nn.Linear(width, hidden) if hidden != width else nn.Identity()
        self.generator = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(
                hidden,
                heads,
                dim_feedforward=4 * hidden,
                dropout=0.1,
                activation="gelu",
                batch_first=True,
                layer_norm_eps=1e-12,
            ),
            layers,
            enable_nested_tensor=False,
        )
        self.generator_head = TiedLMHead(hidden, self._disc.word_embeddings)
        d = self.embedding_dim
        self.discriminator_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1))
        self.discriminator_weight = discriminator_weight
        self.seed = seed
        self.register_buffer("sample_calls", torch.zeros((), dtype=torch.int64))

    @property
    def _disc(self) -> _ElectraEncoder:
        return cast(_ElectraEncoder, self.encoder)

    def generator_logits(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, L, V) float32`` generator logits on the masked input."""
        x = self.generator_project(self._disc.embed_tokens(input_ids, mask))
        x = self.generator(x, src_key_padding_mask=~mask)
        logits: torch.Tensor = self.generator_head(x)
        return logits

    def corrupt(self, batch: TextBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Generator MLM loss and the sampled corruption.

        Returns:
            ``(generator_loss, corrupted, original)``: scalar float32 MLM loss (mean over masked
            tokens), ``(B, L) int64`` ids with every masked position replaced by a sample from
            the generator, ``(B, L) int64`` original ids (labels where masked, else input ids).
        """
        input_ids, mask, labels = self.batch_tensors(batch, labels=True)
        assert labels is not None
        selected = labels != IGNORE_INDEX
        original = torch.where(selected, labels, input_ids)
        logits = self.generator_logits(input_ids, mask)[selected]
        with float32_region(logits):
            logits32 = upcast(logits)
            gen_loss = (
                F.cross_entropy(logits32, labels[selected])
                if logits32.shape[0]
                else logits32.sum() * 0.0
            )
            probs = logits32.detach().softmax(dim=-1)
        corrupted = input_ids.clone()
        if probs.shape[0]:
            gen = keyed_generator(
                probs.device, self.seed, distributed.rank(), int(self.sample_calls)
            )
            corrupted[selected] = torch.multinomial(probs, 1, generator=gen).squeeze(1)
        self.sample_calls += 1
        return gen_loss, corrupted, original

    def training_loss(  # type: ignore[override]
        self, batch: TextBatch, num_items_in_batch: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        """``generator MLM + discriminator_weight * replaced-token BCE`` (``num_items_in_batch``
        is not used: the two terms have different token counts).

        Returns:
            Scalar float32 loss.
        """
        gen_loss, corrupted, original = self.corrupt(batch)
        _, mask, _ = self.batch_tensors(batch)
        hidden = self.text_encoder.forward_features(corrupted, mask)
        scores = self.discriminator_head(hidden[mask]).squeeze(-1)
        targets = discriminator_labels(corrupted, original, mask)[mask]
        with float32_region(scores):
            disc_loss = F.binary_cross_entropy_with_logits(upcast(scores), targets)
        return gen_loss + self.discriminator_weight * disc_loss
