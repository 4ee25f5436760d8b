"""Skip-gram's training pairs, made on the data side from the tokenised corpus.

A text recipe with ``method.name: skip_gram`` trains on word pairs, not on padded texts: each
batch of texts becomes every (centre, context) pair of its real tokens at most ``window`` tokens
apart (word2vec's reduced window: a centre's window is drawn uniformly from 1..``window``), with
frequent words subsampled and ``num_negatives`` noise words per pair drawn from the corpus
unigram distribution raised to 3/4, never equal to the pair's context word. Every draw is a
function of (recipe seed, epoch, sample index), so a resumed run rebuilds the same pairs. Special
tokens ([CLS], [SEP], ...) are neither centres, contexts nor noise words.

The batch is what :class:`ssl_models.text.SkipGram` documents: ``center (N,) int64``,
``context (N,) int64``, ``negatives (N, num_negatives) int64``.

Reference: Mikolov et al., "Distributed Representations of Words and Phrases and their
Compositionality", arXiv:1310.4546, sections 2.2 (negative sampling) and 2.3 (subsampling);
Mikolov et al., "Efficient Estimation of Word Representations in Vector Space",
arXiv:1301.3781, section 3.2 (the reduced window).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ssl_models.text import SkipGram, subsample_keep_probability, unigram_noise_distribution
from ssl_train.errors import SslTrainError

#: Redraws of noise words that hit the pair's own context word, at most (each redraw keeps a
#: draw with probability 1 - P_n(context); only a corpus of nearly one word runs out).
MAX_REDRAWS = 100
_STREAM = 0x5C1B  # separates these draws from any other keyed by (seed, epoch, index)


def skip_gram_settings(method: dict[str, Any]) -> tuple[int, int, float]:
    """``(window, num_negatives, noise_power)`` of a recipe's ``method`` section, with
    :class:`~ssl_models.text.SkipGram`'s defaults for the keys it leaves out."""
    defaults = {
        k: p.default
        for k, p in inspect.signature(SkipGram.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    get = lambda key: method.get(key, defaults[key])  # noqa: E731
    return int(get("window")), int(get("num_negatives")), float(get("noise_power"))


@dataclass(frozen=True)
class SkipGramPairsView:
    """word2vec's data side: pairs in a reduced window, subsampling, unigram^0.75 negatives.

    The window, the noise words per pair and the noise exponent are the method's
    (``method.window``, ``method.num_negatives``, ``method.noise_power``); this view adds:

    Args:
        subsample_threshold: t of frequent-word subsampling (keep probability
            ``min(1, sqrt(t / f) + t / f)``; 1e-5 in the paper for billions of words, 1e-3 suits
            a corpus of ~10^5-10^6 tokens); None turns it off.
        dynamic_window: Draw each centre's window uniformly from 1..``window`` (word2vec's
            default, which weighs near words more); False uses the full window.

    Raises:
        ValueError: ``subsample_threshold`` <= 0.

    Reference: arXiv:1310.4546, sections 2.2-2.3; arXiv:1301.3781, section 3.2.
    """

    subsample_threshold: float | None = 1e-3
    dynamic_window: bool = True

    def __post_init__(self) -> None:
        if self.subsample_threshold is not None and not self.subsample_threshold > 0:
            raise ValueError(
                f"subsample_threshold must be > 0 (or null: off), got {self.subsample_threshold}"
            )


class SkipGramPairs:
    """The skip-gram batches of a tokenised corpus.

    Args:
        token_ids: One ``(n_i,) int64`` array of real token ids per text (special tokens are
            removed here).
        vocab_size: V; every id must be below it.
        view: Subsampling and window policy.
        window: Largest distance of a context word, in tokens (>= 1).
        num_negatives: Noise words per pair (>= 1).
        noise_power: Exponent of the noise distribution (0.75).
        seed: The recipe seed.
        special_ids: Token ids that never enter a pair nor the noise distribution.

    Attributes:
        counts: ``(V,) int64`` token counts of the corpus (specials excluded).
        noise: ``(V,) float64`` the noise distribution ``counts ** noise_power``, normalised.

    Raises:
        ValueError: ``window`` or ``num_negatives`` below 1, an id outside ``[0, V)``, or a
            corpus with no token to pair.
    """

    def __init__(
        self,
        token_ids: Sequence[np.ndarray],
        vocab_size: int,
        view: SkipGramPairsView,
        window: int,
        num_negatives: int,
        noise_power: float = 0.75,
        seed: int = 0,
        special_ids: Sequence[int] = (),
    ) -> None:
        if window < 1 or num_negatives < 1:
            raise ValueError(
                f"window and num_negatives must be >= 1, got {window} and {num_negatives}"
            )
        special = np.asarray(sorted(set(special_ids)), dtype=np.int64)
        self.texts = [np.asarray(t, dtype=np.int64) for t in token_ids]
        self.texts = [t[~np.isin(t, special)] for t in self.texts]
        flat = np.concatenate(self.texts) if self.texts else np.empty(0, dtype=np.int64)
        if flat.size and (flat.min() < 0 or flat.max() >= vocab_size):
            raise ValueError(
                f"token ids must lie in [0, {vocab_size}), got {flat.min()}..{flat.max()}"
            )
        if flat.size == 0:
            raise ValueError("the corpus has no real (non-special) token: skip-gram has no pair")
        self.counts = np.bincount(flat, minlength=vocab_size).astype(np.int64)
        self.noise = unigram_noise_distribution(torch.from_numpy(self.counts), noise_power).numpy()
        self._cdf = np.cumsum(self.noise)
        self._cdf[-1] = 1.0
        self.keep = (
            None
            if view.subsample_threshold is None
            else subsample_keep_probability(
                torch.from_numpy(self.counts), view.subsample_threshold
            ).numpy()
        )
        self.view = view
        self.window = window
        self.num_negatives = num_negatives
        self.seed = seed

    def _rng(self, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed & 0xFFFFFFFF, self.seed >> 32 & 0xFFFFFFFF,
                                      epoch, int(index), _STREAM])  # fmt: skip

    def sample_noise(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """``shape`` int64 ids drawn from :attr:`noise` (inverse-CDF sampling)."""
        draws = np.searchsorted(self._cdf, rng.random(shape), side="right")
        return np.minimum(draws, len(self._cdf) - 1).astype(np.int64)

    def text_pairs(self, index: int, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pairs and negatives of text ``index`` in ``epoch``.

        Returns:
            ``center (n,) int64``, ``context (n,) int64``, ``negatives (n, K) int64``, ordered by
            centre position, then offset.

        Raises:
            SslTrainError: A noise word still equals its context after :data:`MAX_REDRAWS`
                redraws (a corpus of nearly one word).
        """
        rng = self._rng(epoch, index)
        ids = self.texts[index]
        if self.keep is not None:
            ids = ids[rng.random(ids.size) < self.keep[ids]]
        n, w = ids.size, self.window
        offsets = np.array([o for o in range(-w, w + 1) if o != 0], dtype=np.int64)
        reach = rng.integers(1, w + 1, size=n) if self.view.dynamic_window else np.full(n, w)
        pos = np.arange(n)[:, None] + offsets[None, :]
        valid = (pos >= 0) & (pos < n) & (np.abs(offsets)[None, :] <= reach[:, None])
        center = np.broadcast_to(ids[:, None], valid.shape)[valid]
        context = ids[np.clip(pos, 0, max(n - 1, 0))][valid]
        negatives = self.sample_noise(rng, (center.size, self.num_negatives))
        for _ in range(MAX_REDRAWS):
            clash = negatives == context[:, None]
            if not clash.any():
                break
            negatives[clash] = self.sample_noise(rng, (int(clash.sum()),))
        else:
            raise SslTrainError(
                f"text {index}: noise words kept equalling the context word after {MAX_REDRAWS} "
                "redraws; the corpus is nearly one word, too little for skip-gram"
            )
        return center.astype(np.int64), context.astype(np.int64), negatives

    def batch(self, indices: np.ndarray, epoch: int) -> dict[str, torch.Tensor]:
        """``center (N,)``, ``context (N,)``, ``negatives (N, K)`` int64 of the texts at
        ``indices``, concatenated in their order; the same for the same (indices, epoch)."""
        parts = [self.text_pairs(int(i), epoch) for i in indices]
        k = self.num_negatives
        center = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
        context = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
        negatives = np.concatenate([p[2] for p in parts]) if parts else np.empty((0, k), np.int64)
        return {
            "center": torch.from_numpy(np.ascontiguousarray(center)),
            "context": torch.from_numpy(np.ascontiguousarray(context)),
            "negatives": torch.from_numpy(np.ascontiguousarray(negatives)),
        }
