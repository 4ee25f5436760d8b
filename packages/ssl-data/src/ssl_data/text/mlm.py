"""Masked language modelling (MLM) masks: BERT token / whole-word masking and SpanBERT spans.

Which tokens are selected, and what each selected token becomes, are pure functions of
(seed, epoch, sample index) through :func:`ssl_data.randomness.uniform`: the same sample gets the
same mask in any worker, batch, or padding (numbers are indexed by a token's position among the
sample's non-padding tokens, read from ``attention_mask``, so left or right padding and the
batch's length do not change them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch
from tokenizers import Tokenizer

from ssl_data.randomness import uniform
from ssl_data.text.tokenizer import SpecialTokens

MLMStrategy = Literal["token", "whole_word", "span"]
IGNORE_INDEX = -100  # label of positions the loss skips (torch cross_entropy's ignore_index)
_STREAM_BASE = 0x4D4C4D00  # keeps MLM draws apart from other consumers of the same seed


def span_length_pmf(p: float = 0.2, max_length: int = 10) -> np.ndarray:
    """SpanBERT's span-length distribution: geometric(``p``) truncated to 1..``max_length``.

    Returns:
        ``(max_length,) float64``: entry ``k`` is P(length = k + 1), proportional to
        ``p (1 - p)^k`` and summing to 1 (mean 3.8 tokens/words for the defaults).

    Raises:
        ValueError: ``p`` not in (0, 1] or ``max_length`` < 1.

    Reference: Joshi et al., "SpanBERT", arXiv:1907.10529, section 3.1.
    """
    if not 0.0 < p <= 1.0 or max_length < 1:
        raise ValueError(f"need 0 < p <= 1 and max_length >= 1, got p={p}, max_length={max_length}")
    pmf = p * (1.0 - p) ** np.arange(max_length, dtype=np.float64)
    return pmf / pmf.sum()


def sample_span_lengths(u: np.ndarray, p: float = 0.2, max_length: int = 10) -> np.ndarray:
    """Map uniforms in [0, 1) to span lengths drawn from :func:`span_length_pmf` (inverse CDF).

    Returns:
        ``int64`` array of ``u``'s shape, values in [1, ``max_length``].
    """
    cdf = np.cumsum(span_length_pmf(p, max_length))
    return np.minimum(np.searchsorted(cdf, u, side="right"), max_length - 1).astype(np.int64) + 1


def _numpy(
    x: torch.Tensor | np.ndarray | None, name: str, shape: tuple[int, ...]
) -> np.ndarray | None:
    if x is None:
        return None
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.shape != shape:
        raise ValueError(f"{name} must have the shape of input_ids {shape}, got {a.shape}")
    return a


@dataclass(frozen=True)
class MLMMasking:
    """BERT-style masked language modelling on a padded batch of token ids.

    A fraction ``mask_probability`` of the real tokens (never special tokens, never padding) is
    selected; of those, ``mask_replace_probability`` become ``[MASK]``,
    ``random_replace_probability`` a random non-special token, and the rest keep their id. Labels
    hold the original id at selected positions and -100 elsewhere.

    Strategies:

    - ``"token"``: each real token is selected independently with ``mask_probability`` (BERT;
      Hugging Face's ``DataCollatorForLanguageModeling``).
    - ``"whole_word"``: each word (a run of tokens sharing a word id) is selected with
      ``mask_probability``; all its pieces together (BERT's whole-word masking release). The
      expected share of masked tokens is still ``mask_probability``.
    - ``"span"``: SpanBERT. A budget of round(``mask_probability`` × real tokens) tokens
      (rounded up or down at random, so the expected share is exact) is filled with spans whose
      length in words (tokens, without ``word_ids``) follows :func:`span_length_pmf`; each span
      starts at a random not-yet-masked word and stops at a special token, at the sequence end
      or at the budget. Words are never cut: a last word longer than what is left of the budget
      is masked with probability (tokens left) / (its tokens), which keeps the expected count
      exact.

    The 80/10/10 decision is made per token in every strategy.

    Args:
        mask_token_id: Id of ``[MASK]``.
        vocab_size: Vocabulary size; random replacements are drawn uniformly from
            ``[0, vocab_size)`` minus ``special_token_ids``.
        special_token_ids: Ids never selected and never drawn as replacements (also protects
            special tokens when no ``special_tokens_mask`` is passed).
        mask_probability: Share of real tokens to select (0.15 in BERT).
        mask_replace_probability: Share of selected tokens replaced by ``[MASK]`` (0.8).
        random_replace_probability: Share of selected tokens replaced by a random token (0.1).
        strategy: ``"token"``, ``"whole_word"`` or ``"span"``.
        span_geometric_p: SpanBERT's geometric parameter (0.2).
        max_span_length: SpanBERT's clip (10).
        seed: Run seed.
        stream: Separates several independent maskings of the same samples (e.g. two views).

    Raises:
        ValueError: A probability outside [0, 1], mask + random above 1, ids outside the
            vocabulary, or bad span parameters.

    Reference: Devlin et al., "BERT", arXiv:1810.04805 (section 3.1, appendix A.1); Joshi et al.,
    "SpanBERT", arXiv:1907.10529.
    """

    mask_token_id: int
    vocab_size: int
    special_token_ids: tuple[int, ...] = ()
    mask_probability: float = 0.15
    mask_replace_probability: float = 0.8
    random_replace_probability: float = 0.1
    strategy: MLMStrategy = "token"
    span_geometric_p: float = 0.2
    max_span_length: int = 10
    seed: int = 0
    stream: int = 0

    def __post_init__(self) -> None:
        for name in ("mask_probability", "mask_replace_probability", "random_replace_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.mask_replace_probability + self.random_replace_probability > 1.0 + 1e-12:
            raise ValueError(
                "mask_replace_probability + random_replace_probability must be <= 1, got "
                f"{self.mask_replace_probability} + {self.random_replace_probability}"
            )
        if self.strategy not in get_args(MLMStrategy):
            raise ValueError(
                f"strategy must be one of {get_args(MLMStrategy)}, got {self.strategy!r}"
            )
        if self.vocab_size < 1 or not 0 <= self.mask_token_id < self.vocab_size:
            raise ValueError(
                f"mask_token_id {self.mask_token_id} must lie in [0, vocab_size={self.vocab_size})"
            )
        span_length_pmf(self.span_geometric_p, self.max_span_length)  # validates
        if self.random_replace_probability > 0 and self.replacement_ids().size == 0:
            raise ValueError("every id is special: no token left for random replacement")

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer, **kwargs: Any) -> MLMMasking:
        """Build with ``tokenizer``'s ``[MASK]`` id, vocabulary size and special ids.

        Args:
            tokenizer: A ``tokenizers.Tokenizer`` with a ``[MASK]`` or ``<mask>`` special token.
            **kwargs: Any other field of :class:`MLMMasking`.

        Raises:
            ValueError: The tokenizer has no mask token.
        """
        special = SpecialTokens.of(tokenizer)
        if special.mask_id is None:
            raise ValueError("the tokenizer has no [MASK] / <mask> special token")
        return cls(
            mask_token_id=special.mask_id,
            vocab_size=tokenizer.get_vocab_size(),
            special_token_ids=special.all_ids,
            **kwargs,
        )

    def replacement_ids(self) -> np.ndarray:
        """``(V',) int64``: the ids random replacement draws from (non-special ids)."""
        ids = np.arange(self.vocab_size, dtype=np.int64)
        return ids[~np.isin(ids, np.asarray(self.special_token_ids, dtype=np.int64))]

    def _uniforms(self, indices: np.ndarray, epoch: int, num: int, k: int) -> np.ndarray:
        return uniform(self.seed, epoch, indices, num, stream=_STREAM_BASE + 8 * self.stream + k)

    def select(
        self,
        input_ids: torch.Tensor | np.ndarray,
        indices: Sequence[int] | np.ndarray,
        epoch: int,
        *,
        special_tokens_mask: torch.Tensor | np.ndarray | None = None,
        attention_mask: torch.Tensor | np.ndarray | None = None,
        word_ids: torch.Tensor | np.ndarray | None = None,
    ) -> np.ndarray:
        """Which positions are selected for prediction (before the 80/10/10 replacement).

        Args: as :meth:`__call__`.

        Returns:
            ``(B, L) bool``; never true at special tokens or padding.
        """
        ids, idx, cand, rank, words = self._prepare(
            input_ids, indices, special_tokens_mask, attention_mask, word_ids
        )
        if self.strategy == "whole_word" and words is None:
            raise ValueError(
                "strategy 'whole_word' needs word_ids (B, L): the tokenizer's Encoding.word_ids, "
                "-1 where there is none"
            )
        batch, length = ids.shape
        u = np.take_along_axis(self._uniforms(idx, epoch, max(length, 1), 0), rank, axis=1)
        if self.strategy == "token":
            return cand & (u < self.mask_probability)
        starts = self._word_starts(cand, words)
        if self.strategy == "whole_word":
            first = np.maximum.accumulate(np.where(starts, np.arange(length)[None, :], 0), axis=1)
            return cand & (np.take_along_axis(u, first, axis=1) < self.mask_probability)
        u_span = self._uniforms(idx, epoch, 3 * max(length, 1) + 1, 3)
        selected = np.zeros_like(cand)
        for b in range(batch):
            selected[b] = self._span_row(cand[b], starts[b], u_span[b])
        return selected

    def __call__(
        self,
        input_ids: torch.Tensor,
        indices: Sequence[int] | np.ndarray,
        epoch: int,
        *,
        special_tokens_mask: torch.Tensor | np.ndarray | None = None,
        attention_mask: torch.Tensor | np.ndarray | None = None,
        word_ids: torch.Tensor | np.ndarray | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask a padded batch.

        Args:
            input_ids: ``(B, L) int64`` token ids (any padding side).
            indices: ``(B,)`` dataset indices of the samples (the randomness key, with ``epoch``).
            epoch: Epoch number.
            special_tokens_mask: ``(B, L)``, nonzero at special tokens ([CLS], [SEP], padding).
            attention_mask: ``(B, L)``, zero at padding.
            word_ids: ``(B, L) int64`` word index of every token, -1 where none (the tokenizer's
                ``Encoding.word_ids``); needed by ``"whole_word"``, used by ``"span"`` if given.

        Returns:
            ``input_ids (B, L) int64`` with the replacements (a new tensor), and
            ``labels (B, L) int64``: the original id where selected, -100 elsewhere; both on
            ``input_ids``' device.

        Raises:
            ValueError: Shapes disagree, ``indices`` is not ``(B,)``, or ``word_ids`` is missing
                for ``"whole_word"``.
        """
        selected = self.select(
            input_ids,
            indices,
            epoch,
            special_tokens_mask=special_tokens_mask,
            attention_mask=attention_mask,
            word_ids=word_ids,
        )
        ids, idx, _, rank, _ = self._prepare(input_ids, indices, None, attention_mask, None)
        length = max(ids.shape[1], 1)
        u_action = np.take_along_axis(self._uniforms(idx, epoch, length, 1), rank, axis=1)
        u_token = np.take_along_axis(self._uniforms(idx, epoch, length, 2), rank, axis=1)
        to_mask = selected & (u_action < self.mask_replace_probability)
        to_random = (
            selected
            & ~to_mask
            & (u_action < self.mask_replace_probability + self.random_replace_probability)
        )
        out = ids.copy()
        out[to_mask] = self.mask_token_id
        if to_random.any():
            pool = self.replacement_ids()
            out[to_random] = pool[(u_token[to_random] * len(pool)).astype(np.int64)]
        labels = np.where(selected, ids, IGNORE_INDEX)
        device = input_ids.device if isinstance(input_ids, torch.Tensor) else None
        return (
            torch.from_numpy(out).to(device),
            torch.from_numpy(labels.astype(np.int64)).to(device),
        )

    def mask_batch(
        self, batch: Mapping[str, torch.Tensor], indices: Sequence[int] | np.ndarray, epoch: int
    ) -> dict[str, torch.Tensor]:
        """:meth:`__call__` on a collated batch (see :class:`~ssl_data.text.collate.TextCollator`).

        Reads ``input_ids`` and, when present, ``special_tokens_mask``, ``attention_mask`` and
        ``word_ids``.

        Returns:
            A new dict: the batch with ``input_ids`` replaced and ``labels (B, L) int64`` added.
        """
        input_ids, labels = self(
            batch["input_ids"],
            indices,
            epoch,
            special_tokens_mask=batch.get("special_tokens_mask"),
            attention_mask=batch.get("attention_mask"),
            word_ids=batch.get("word_ids"),
        )
        return {**batch, "input_ids": input_ids, "labels": labels}

    def _prepare(
        self,
        input_ids: torch.Tensor | np.ndarray,
        indices: Sequence[int] | np.ndarray,
        special_tokens_mask: torch.Tensor | np.ndarray | None,
        attention_mask: torch.Tensor | np.ndarray | None,
        word_ids: torch.Tensor | np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        ids = (
            input_ids.detach().cpu().numpy()
            if isinstance(input_ids, torch.Tensor)
            else np.asarray(input_ids)
        )
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"input_ids must be (B, L) integers, got {ids.shape} {ids.dtype}")
        ids = ids.astype(np.int64, copy=False)
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.shape != (ids.shape[0],):
            raise ValueError(f"indices must be ({ids.shape[0]},) sample indices, got {idx.shape}")
        stm = _numpy(special_tokens_mask, "special_tokens_mask", ids.shape)
        am = _numpy(attention_mask, "attention_mask", ids.shape)
        words = _numpy(word_ids, "word_ids", ids.shape)
        cand = np.ones(ids.shape, dtype=bool)
        if am is not None:
            cand &= am != 0
        if stm is not None:
            cand &= stm == 0
        if self.special_token_ids:
            cand &= ~np.isin(ids, np.asarray(self.special_token_ids, dtype=np.int64))
        attended = am != 0 if am is not None else np.ones(ids.shape, dtype=bool)
        rank = np.maximum(np.cumsum(attended, axis=1) - 1, 0)
        return ids, idx, cand, rank, words

    @staticmethod
    def _word_starts(cand: np.ndarray, words: np.ndarray | None) -> np.ndarray:
        """``(B, L) bool``: candidate positions that begin a unit (a word, or every token)."""
        if words is None:
            return cand.copy()
        prev_cand = np.zeros_like(cand)
        prev_cand[:, 1:] = cand[:, :-1]
        prev_word = np.full_like(words, -1)
        prev_word[:, 1:] = words[:, :-1]
        return cand & (~prev_cand | (words != prev_word) | (words < 0))

    def _span_row(self, cand: np.ndarray, starts: np.ndarray, u: np.ndarray) -> np.ndarray:
        """SpanBERT masking of one row; ``u`` holds ``3 L + 1`` uniforms."""
        selected = np.zeros_like(cand)
        pos = np.flatnonzero(cand)
        n = len(pos)
        if n == 0:
            return selected
        budget = min(n, math.floor(self.mask_probability * n + u[0]))
        unit_lo = np.flatnonzero(starts[pos])  # unit k covers pos[unit_lo[k]:unit_hi[k]]
        unit_hi = np.append(unit_lo[1:], n)
        # A new segment begins wherever a special token or padding sits between two candidates.
        segment = np.cumsum(np.r_[0, np.diff(pos) > 1])[unit_lo]
        taken = np.zeros(len(unit_lo), dtype=bool)
        count = 0
        lengths = sample_span_lengths(u[1::3], self.span_geometric_p, self.max_span_length)
        it = 0
        while count < budget:  # each pass takes >= 1 token or ends, so at most `budget` passes
            free = np.flatnonzero(~taken)
            k = int(free[min(int(u[2 + 3 * it] * len(free)), len(free) - 1)])
            for j in range(k, min(k + int(lengths[it]), len(unit_lo))):
                if segment[j] != segment[k]:
                    break
                if taken[j]:
                    continue
                size = int(unit_hi[j] - unit_lo[j])
                if count + size > budget:
                    # A word larger than what is left is taken with probability left / size,
                    # so the expected number of masked tokens is the budget, words stay whole.
                    taken[j] = u[3 + 3 * it] * size < budget - count
                    count = budget
                    break
                taken[j] = True
                count += size
                if count >= budget:
                    break
            it += 1
        for unit in np.flatnonzero(taken):
            selected[pos[unit_lo[unit] : unit_hi[unit]]] = True
        return selected
