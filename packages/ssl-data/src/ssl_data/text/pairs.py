"""Sentence pairs for next sentence prediction (NSP): consecutive sentences or a random one.

Pair ``k`` joins sentence ``i`` to sentence ``i + 1`` of the same document (``is random`` = 0) or,
with probability ``random_next_probability``, to a random sentence of another document (1) — the
construction of BERT's pre-training data (arXiv:1810.04805, section 3.1, task 2). The coin and
the random sentence are pure functions of (seed, epoch, pair index), so pairs differ from epoch
to epoch yet repeat exactly on a resumed run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import torch

from ssl_data.randomness import uniform
from ssl_data.text.collate import TextCollator

_STREAM = 0x4E535000  # "NSP"


@dataclass(frozen=True)
class SentencePair:
    """Two texts and BERT's next-sentence label.

    Attributes:
        first: Sentence A.
        second: Sentence B.
        next_sentence_label: 0 if B follows A in the corpus, 1 if B is a random sentence
            (Hugging Face's ``BertForPreTraining`` convention).
    """

    first: str
    second: str
    next_sentence_label: int


class NextSentencePairs(Sequence[SentencePair]):
    """Sentence pairs from consecutive sentences (or lines), with seeded random negatives.

    Args:
        sentences: The corpus, in order.
        document_ids: ``(N,)`` document of each sentence; documents must be contiguous runs.
            Pairs never cross a document boundary, and random seconds come from other
            documents. ``None``: one document (random seconds are any sentence but ``i`` and
            ``i + 1``).
        random_next_probability: Share of pairs whose second sentence is random (0.5 in BERT).
        seed: Run seed.
        epoch: Initial epoch (change with :meth:`set_epoch`).

    Raises:
        ValueError: Fewer than 3 sentences, ``document_ids`` of the wrong length or not in
            contiguous runs, a probability outside [0, 1], or random seconds asked for with a
            single-document corpus given as ``document_ids``.

    Reference: Devlin et al., "BERT", arXiv:1810.04805.
    """

    def __init__(
        self,
        sentences: Sequence[str],
        document_ids: Sequence[int] | np.ndarray | None = None,
        random_next_probability: float = 0.5,
        seed: int = 0,
        epoch: int = 0,
    ):
        n = len(sentences)
        if n < 3:
            raise ValueError(f"need at least 3 sentences to make pairs, got {n}")
        if not 0.0 <= random_next_probability <= 1.0:
            raise ValueError(
                f"random_next_probability must be in [0, 1], got {random_next_probability}"
            )
        docs = (
            np.zeros(n, dtype=np.int64)
            if document_ids is None
            else np.asarray(document_ids, dtype=np.int64).reshape(-1)
        )
        if docs.shape != (n,):
            raise ValueError(f"document_ids must be ({n},), got {docs.shape}")
        change = np.r_[True, docs[1:] != docs[:-1]]
        run_starts = np.flatnonzero(change)
        if len(np.unique(docs[run_starts])) != len(run_starts):
            raise ValueError("document_ids must form contiguous runs (one run per document)")
        run_ends = np.append(run_starts[1:], n)
        self._doc_start = np.repeat(run_starts, run_ends - run_starts)
        self._doc_end = np.repeat(run_ends, run_ends - run_starts)
        self._single_doc = document_ids is None
        if not self._single_doc and len(run_starts) < 2 and random_next_probability > 0:
            raise ValueError("random seconds come from other documents, but there is only one")
        self.sentences = sentences
        self.first_index = np.flatnonzero(~np.r_[change[1:], True])  # i with i + 1 in its document
        self.random_next_probability = random_next_probability
        self.seed = seed
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        """Draw the pairs of another epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.first_index)

    def pair_indices(self, k: int) -> tuple[int, int, int]:
        """``(i, j, label)`` of pair ``k``: sentence indices and next-sentence label.

        Raises:
            IndexError: ``k`` outside ``[-len, len)``.
        """
        if not -len(self) <= k < len(self):
            raise IndexError(f"pair index {k} out of range for {len(self)} pairs")
        k %= len(self)
        i = int(self.first_index[k])
        coin, pick = uniform(self.seed, self.epoch, [k], 2, stream=_STREAM)[0]
        if coin >= self.random_next_probability:
            return i, i + 1, 0
        # Exclude one contiguous range: [i, i + 2) in a single document, else i's document.
        lo, hi = (i, i + 2) if self._single_doc else (self._doc_start[i], self._doc_end[i])
        choices = len(self.sentences) - (hi - lo)
        j = min(int(pick * choices), choices - 1)
        return i, int(j if j < lo else j + (hi - lo)), 1

    @overload
    def __getitem__(self, k: int) -> SentencePair: ...
    @overload
    def __getitem__(self, k: slice) -> list[SentencePair]: ...
    def __getitem__(self, k: int | slice) -> SentencePair | list[SentencePair]:
        if isinstance(k, slice):
            return [self[x] for x in range(*k.indices(len(self)))]
        i, j, label = self.pair_indices(k)
        return SentencePair(self.sentences[i], self.sentences[j], label)


def collate_sentence_pairs(
    pairs: Sequence[SentencePair], collator: TextCollator
) -> dict[str, torch.Tensor]:
    """Tokenise and pad sentence pairs, adding their next-sentence labels.

    Returns:
        The :class:`~ssl_data.text.collate.TextCollator` batch (``input_ids``,
        ``token_type_ids``, ... ``(B, L) int64``) plus ``next_sentence_label (B,) int64``.
    """
    batch = collator([(p.first, p.second) for p in pairs])
    batch["next_sentence_label"] = torch.tensor(
        [p.next_sentence_label for p in pairs], dtype=torch.int64
    )
    return batch
