"""A token -> vector lookup over trained word vectors (for downstream use of skip-gram)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssl_models.errors import SslModelsError


class UnknownTokenError(SslModelsError, KeyError):
    """A token that the vocabulary does not hold."""

    def __str__(self) -> str:
        return str(self.args[0])


class WordVectors:
    """Word vectors indexed by token string, with cosine nearest neighbours.

    Args:
        vocabulary: ``V`` distinct tokens; token ``i`` owns row ``i``.
        vectors: ``(V, D)`` float tensor (copied to float32 on CPU, detached).

    Raises:
        ValueError: Row count differs from the vocabulary size, or a token repeats.

    Reference: Mikolov et al., arXiv:1310.4546 (the vectors); the interface follows gensim's
    ``KeyedVectors`` (``wv["king"]``, ``wv.most_similar("king")``).
    """

    def __init__(self, vocabulary: Sequence[str], vectors: torch.Tensor) -> None:
        if vectors.ndim != 2 or vectors.shape[0] != len(vocabulary):
            raise ValueError(
                f"vectors must be ({len(vocabulary)}, D) for {len(vocabulary)} tokens, got "
                f"{tuple(vectors.shape)}"
            )
        self.index = {token: i for i, token in enumerate(vocabulary)}
        if len(self.index) != len(vocabulary):
            raise ValueError("vocabulary tokens must be distinct")
        self.vocabulary = list(vocabulary)
        self.vectors = vectors.detach().to("cpu", torch.float32).clone()
        self._unit = F.normalize(self.vectors, dim=1)

    @classmethod
    def from_embedding(cls, vocabulary: Sequence[str], embedding: nn.Embedding) -> WordVectors:
        """Wrap an embedding table, e.g. ``SkipGram.input_vectors``."""
        return cls(vocabulary, embedding.weight)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def __contains__(self, token: object) -> bool:
        return token in self.index

    def __iter__(self) -> Iterator[str]:
        return iter(self.vocabulary)

    def _row(self, token: str) -> int:
        try:
            return self.index[token]
        except KeyError:
            raise UnknownTokenError(
                f"token {token!r} is not in the vocabulary of {len(self)}"
            ) from None

    def __getitem__(self, token: str) -> torch.Tensor:
        """``(D,) float32`` vector of ``token``.

        Raises:
            UnknownTokenError: Unknown token.
        """
        return self.vectors[self._row(token)]

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two tokens' vectors, in [-1, 1].

        Raises:
            UnknownTokenError: Unknown token.
        """
        return float(self._unit[self._row(a)] @ self._unit[self._row(b)])

    def most_similar(self, query: str | torch.Tensor, topn: int = 10) -> list[tuple[str, float]]:
        """The ``topn`` tokens of highest cosine similarity to ``query``.

        Args:
            query: A token (excluded from its own neighbours) or a ``(D,)`` vector.
            topn: How many neighbours (>= 1).

        Returns:
            ``[(token, cosine), ...]``, most similar first.

        Raises:
            UnknownTokenError: Unknown token.
            ValueError: ``topn`` < 1 or a vector of the wrong width.
        """
        if topn < 1:
            raise ValueError(f"topn must be >= 1, got {topn}")
        exclude = -1
        if isinstance(query, str):
            exclude = self._row(query)
            q = self._unit[exclude]
        else:
            if query.shape != (self.vectors.shape[1],):
                raise ValueError(
                    f"query vector must be ({self.vectors.shape[1]},), got {tuple(query.shape)}"
                )
            q = F.normalize(query.detach().to("cpu", torch.float32), dim=0)
        scores = self._unit @ q
        if exclude >= 0:
            scores[exclude] = float("-inf")
        k = min(topn, len(self) - (exclude >= 0))
        values, rows = scores.topk(k)
        return [(self.vocabulary[int(r)], float(v)) for v, r in zip(values, rows, strict=True)]
