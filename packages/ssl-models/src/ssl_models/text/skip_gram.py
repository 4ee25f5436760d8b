"""Skip-gram with negative sampling (word2vec, Mikolov et al., 2013, arXiv:1310.4546)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssl_models import distributed
from ssl_models.text._seeding import keyed_generator
from ssl_models.text.base import TextBatch, TextSSLMethod
from ssl_models.text.padding import check_token_batch


def unigram_noise_distribution(
    counts: Sequence[int] | torch.Tensor, power: float = 0.75
) -> torch.Tensor:
    """word2vec's noise distribution ``P_n(w) ∝ count(w) ** power``.

    Args:
        counts: ``(V,)`` non-negative token counts in the training corpus.
        power: Exponent (3/4 in the paper, which found it beat the plain unigram and uniform).

    Returns:
        ``(V,) float64`` probabilities summing to 1.

    Raises:
        ValueError: Not 1-D, a negative count, or all counts zero.

    Reference: arXiv:1310.4546, section 2.2.
    """
    c = torch.as_tensor(counts, dtype=torch.float64)
    if c.ndim != 1 or c.numel() == 0 or bool((c < 0).any()) or float(c.sum()) <= 0:
        raise ValueError(
            f"counts must be a non-empty (V,) non-negative vector with a positive sum, got shape {tuple(c.shape)}"
        )
    weights = c**power
    return weights / weights.sum()


def subsample_keep_probability(
    counts: Sequence[int] | torch.Tensor, threshold: float = 1e-5
) -> torch.Tensor:
    """word2vec's frequent-word subsampling: keep each occurrence of ``w`` with probability
    ``min(1, sqrt(t / f(w)) + t / f(w))``, ``f`` the word's share of the corpus (the formula of
    the released C tool; the paper writes ``1 - sqrt(t / f)`` for the discard probability).

    Args:
        counts: ``(V,)`` token counts.
        threshold: t (1e-5 in the paper for large corpora; 1e-3 suits small ones).

    Returns:
        ``(V,) float64`` keep probabilities (1 for unseen words).

    Raises:
        ValueError: Bad counts or ``threshold`` <= 0.

    Reference: arXiv:1310.4546, section 2.3.
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    c = torch.as_tensor(counts, dtype=torch.float64)
    unigram_noise_distribution(c, 1.0)  # validates
    ratio = threshold / (c / c.sum()).clamp(min=1e-300)
    return (ratio.sqrt() + ratio).clamp(max=1.0)


def skip_gram_pairs(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (centre, context) pair of real tokens at most ``window`` positions apart.

    Args:
        input_ids: ``(B, L) int64``.
        attention_mask: ``(B, L)``, nonzero = real token (None: all real).
        window: Largest distance in tokens (>= 1; 5 in word2vec's defaults).

    Returns:
        ``center (N,) int64`` and ``context (N,) int64`` token ids, ordered by row, then centre
        position, then offset ``-window..window``.

    Raises:
        ValueError: ``window`` < 1 or a malformed batch.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1 token, got {window}")
    mask = check_token_batch(input_ids, attention_mask)
    length = input_ids.shape[1]
    offsets = [o for o in range(-window, window + 1) if o != 0]
    pos = torch.arange(length, device=input_ids.device)
    ctx = pos[:, None] + torch.tensor(offsets, device=input_ids.device)[None, :]  # (L, 2w)
    inside = (ctx >= 0) & (ctx < length)
    ctx = ctx.clamp(0, length - 1)
    valid = mask[:, :, None] & mask[:, ctx] & inside[None]  # (B, L, 2w)
    center = input_ids[:, :, None].expand_as(valid)
    context = input_ids[:, ctx]
    return center[valid], context[valid]


class SkipGram(TextSSLMethod):
    """Skip-gram with negative sampling: each centre word's input vector should score its
    context word's output vector high and ``num_negatives`` noise words low.

    ``loss = mean_pairs [ -log σ(u_o · v_c) - Σ_k log σ(-u_k · v_c) ]`` (the paper's eq. 4),
    ``v`` the encoder's (input) vectors, ``u`` the output vectors (zero-initialised, as in the C
    tool), noise words ``k`` drawn from :func:`unigram_noise_distribution`. Draws are keyed by
    ``(seed, rank, call counter)`` with the counter in the state dict, so a resumed run repeats
    them.

    Args:
        encoder: A :class:`~ssl_models.text.WordEmbeddingEncoder` (needs ``word_embeddings``).
        counts: ``(V,)`` corpus token counts for the noise distribution; None = uniform.
        num_negatives: Noise words per pair (5-20 for small corpora in the paper).
        window: Context window for batches given as ``input_ids`` (tokens each side).
        noise_power: Exponent of the noise distribution (0.75).
        seed: Seed of the negative sampling.
        pooling: Sentence pooling for :meth:`embed` (None keeps the encoder's).

    Batch:
        Either ``center (N,) int64`` and ``context (N,) int64`` (optionally ``negatives
        (N, num_negatives) int64``), or ``input_ids (B, L)`` and ``attention_mask (B, L)``,
        turned into pairs by :func:`skip_gram_pairs`.

    Raises:
        TypeError: The encoder has no ``word_embeddings``.
        ValueError: ``counts`` does not have V entries, or ``num_negatives`` < 1.

    Reference: Mikolov et al., "Distributed Representations of Words and Phrases and their
    Compositionality", arXiv:1310.4546, section 2.2.
    """

    sample_calls: torch.Tensor
    noise: torch.Tensor

    def __init__(
        self,
        encoder: nn.Module,
        counts: Sequence[int] | torch.Tensor | None = None,
        num_negatives: int = 5,
        window: int = 5,
        noise_power: float = 0.75,
        seed: int = 0,
        pooling: str | None = None,
    ) -> None:
        super().__init__(encoder, pooling)
        emb = getattr(encoder, "word_embeddings", None)
        if not isinstance(emb, nn.Embedding):
            raise TypeError(f"SkipGram needs an encoder with word_embeddings, got {type(encoder)}")
        vocab = emb.num_embeddings
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        if counts is None:
            noise = torch.full((vocab,), 1.0 / vocab, dtype=torch.float64)
        else:
            noise = unigram_noise_distribution(counts, noise_power)
            if noise.numel() != vocab:
                raise ValueError(
                    f"counts must have vocab_size={vocab} entries, got {noise.numel()}"
                )
        self.register_buffer("noise", noise.float())
        self.register_buffer("sample_calls", torch.zeros((), dtype=torch.int64))
        self.output_vectors = nn.Embedding(vocab, emb.embedding_dim)
        nn.init.zeros_(self.output_vectors.weight)
        self.num_negatives = num_negatives
        self.window = window
        self.seed = seed

    @property
    def input_vectors(self) -> nn.Embedding:
        """The ``(V, D)`` input ("word") vectors, the encoder's table."""
        emb: nn.Embedding = getattr(self.encoder, "word_embeddings")  # noqa: B009
        return emb

    def sample_negatives(self, num_pairs: int, device: torch.device) -> torch.Tensor:
        """``(num_pairs, num_negatives) int64`` noise words (advances the call counter)."""
        gen = keyed_generator(device, self.seed, distributed.rank(), int(self.sample_calls))
        self.sample_calls += 1
        noise: torch.Tensor = self.noise
        if num_pairs == 0:
            return torch.zeros(0, self.num_negatives, dtype=torch.int64, device=device)
        draws = torch.multinomial(noise, num_pairs * self.num_negatives, True, generator=gen)
        return draws.view(num_pairs, self.num_negatives)

    def pairs(self, batch: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(center, context)`` ids of a batch, each ``(N,) int64``."""
        if "center" in batch:
            center, context = batch["center"], batch["context"]
            if center.ndim != 1 or center.shape != context.shape:
                raise ValueError(
                    f"center and context must be one (N,) shape, got {tuple(center.shape)} and "
                    f"{tuple(context.shape)}"
                )
            return center, context
        input_ids, mask, _ = self.batch_tensors(batch)
        return skip_gram_pairs(input_ids, mask, self.window)

    def training_loss(  # type: ignore[override]
        self, batch: TextBatch, num_items_in_batch: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Negative-sampling loss, mean over pairs (or sum ÷ ``num_items_in_batch`` pairs).

        Returns:
            Scalar float32 loss.
        """
        center, context = self.pairs(batch)
        negatives = batch.get("negatives")
        if negatives is None:
            negatives = self.sample_negatives(center.shape[0], center.device)
        v = self.input_vectors(center)  # (N, D)
        u_pos = self.output_vectors(context)  # (N, D)
        u_neg = self.output_vectors(negatives)  # (N, K, D)
        positive = F.logsigmoid((v * u_pos).sum(-1))
        negative = F.logsigmoid(-(u_neg @ v.unsqueeze(-1)).squeeze(-1)).sum(-1)
        total = -(positive + negative).sum()
        denominator = center.shape[0] if num_items_in_batch is None else int(num_items_in_batch)
        return total / max(denominator, 1)
