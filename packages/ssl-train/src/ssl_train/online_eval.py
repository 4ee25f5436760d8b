"""Online evaluation during pretraining: kNN top-1 on held-out labelled data, collapse monitor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from ssl_models import SSLMethod, collapse_std
from ssl_models.text import TextSSLMethod
from ssl_train.data import labelled_splits
from ssl_train.evaluation import knn_top1
from ssl_train.evaluation.embed import embed_images, embed_texts
from ssl_train.recipe import Recipe


@dataclass
class Evaluation:
    """One online evaluation.

    Attributes:
        knn_top1: Accuracy in [0, 1] of the weighted kNN vote of held-out images.
        collapse_std: Mean per-dimension std of L2-normalised held-out embeddings (healthy:
            near ``1/sqrt(embedding_dim)``; collapsed: near 0).
        embedding_dim: D.
        heldout_embeddings: ``(M, D) float32`` held-out embeddings (for the embedding map).
        heldout_labels: ``(M,) int64``.
        extra: Further logged values (paired recipes: ``retrieval_a2t_top1``,
            ``retrieval_t2a_top1``, cross-modal retrieval top-1 of the held-out clips).
    """

    knn_top1: float
    collapse_std: float
    embedding_dim: int
    heldout_embeddings: np.ndarray
    heldout_labels: np.ndarray
    extra: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """The values logged to metrics.jsonl / TensorBoard / MLflow.

        ``collapse_std_reference`` is ``1/sqrt(D)``, the value of isotropic embeddings.
        """
        return {
            "knn_top1": self.knn_top1,
            "collapse_std": self.collapse_std,
            "collapse_std_reference": 1.0 / self.embedding_dim**0.5,
            **self.extra,
        }


class OnlineEvaluator:
    """kNN top-1 (memory bank: labelled train images; queries: test images) and collapse monitor.

    The data are loaded once (:func:`ssl_train.data.labelled_splits`: Fashion-MNIST's train and
    test splits, or an ``image_folder`` recipe's ``data.eval_path`` split into bank and queries;
    text: :func:`labelled_text_splits`, embedded with the method's ``embed``, pooled over real
    tokens; speech: :func:`labelled_speech_splits`, the method's ``embed`` pooled over real
    frames). Evaluation runs in eval
    mode without gradients and leaves every random generator as it found it, so a run with
    evaluation trains exactly like one without.

    Args:
        recipe: Its ``evaluation`` section sets k, the vote temperature and the split sizes.
        device: Where the model is.
        tokenizer: Text recipes: the run's tokenizer.

    Reference: Wu et al., arXiv:1805.01978 (weighted kNN); Chen & He, arXiv:2011.10566 (collapse).
    """

    def __init__(
        self, recipe: Recipe, device: torch.device, tokenizer: Tokenizer | None = None
    ) -> None:
        self.recipe = recipe
        self.device = device
        self.tokenizer = tokenizer
        self.bank: Any
        self.heldout: Any
        self.paired: Any = None
        if recipe.data.is_paired:
            # kNN of the speech tower's clips by voice, as speech recipes; plus retrieval
            from ssl_train.paired_data import load_paired_corpus

            if tokenizer is None:
                raise ValueError("a paired recipe's online evaluation needs the run's tokenizer")
            self.paired = load_paired_corpus(recipe)
            n, m = recipe.evaluation.bank_size, recipe.evaluation.heldout_size
            self.bank, self.bank_labels = self.paired.train[:n], self.paired.train_labels[:n]
            self.heldout, self.heldout_labels = (
                self.paired.queries[:m],
                self.paired.query_labels[:m],
            )
        elif recipe.data.is_speech:
            self.bank, self.bank_labels, self.heldout, self.heldout_labels = labelled_speech_splits(
                recipe
            )
        elif recipe.data.is_text:
            if tokenizer is None:
                raise ValueError("a text recipe's online evaluation needs the run's tokenizer")
            self.bank, self.bank_labels, self.heldout, self.heldout_labels = labelled_text_splits(
                recipe
            )
        else:
            self.bank, self.bank_labels, self.heldout, self.heldout_labels = labelled_splits(recipe)

    def embed(
        self, model: SSLMethod, items: torch.Tensor | Sequence[str] | Sequence[np.ndarray]
    ) -> np.ndarray:
        """``(N, D) float32`` embeddings of uint8 images, texts or clips, with the current
        weights."""
        if self.recipe.data.is_speech or self.recipe.data.is_paired:
            from ssl_train.speech_data import embed_clips

            return embed_clips(model, list(items), device=self.device)  # type: ignore[arg-type]
        if self.tokenizer is not None:
            assert isinstance(model, TextSSLMethod)
            texts = [str(t) for t in items]
            return embed_texts(model, self.tokenizer, texts, self.recipe.data.max_length,
                               device=self.device)  # fmt: skip
        assert isinstance(items, torch.Tensor)
        return embed_images(model, self.recipe, items, device=self.device)

    def evaluate(self, model: SSLMethod) -> Evaluation:
        """Embed bank and held-out images with the current weights and score them."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            bank = self.embed(model, self.bank)
            heldout = self.embed(model, self.heldout)
        ev = self.recipe.evaluation
        acc = knn_top1(bank, self.bank_labels, heldout, self.heldout_labels, k=ev.knn_k,
                       temperature=ev.knn_temperature)  # fmt: skip
        spread = float(collapse_std(torch.from_numpy(heldout)))
        extra: dict[str, float] = {}
        if self.paired is not None:
            from ssl_train.paired_data import retrieval_metrics

            assert self.tokenizer is not None
            with torch.random.fork_rng(devices=devices):
                r = retrieval_metrics(model, self.recipe, self.paired, self.tokenizer)
            extra = {k: float(r[k]) for k in ("retrieval_a2t_top1", "retrieval_t2a_top1")}
        return Evaluation(acc, spread, int(heldout.shape[1]), heldout, self.heldout_labels,
                          extra)  # fmt: skip


def labelled_text_splits(recipe: Recipe) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """The labelled texts of online evaluation: the first ``evaluation.bank_size`` memory-bank
    texts and the first ``evaluation.heldout_size`` held-out queries of
    :func:`ssl_train.text_data.load_text_corpus` (both in the split's shuffled order, so a
    prefix samples every class fairly).

    Returns:
        ``(bank texts (N,), bank_labels (N,) int64, queries (M,), query_labels (M,) int64)``.
    """
    from ssl_train.text_data import load_text_corpus

    corpus = load_text_corpus(recipe)
    n, m = recipe.evaluation.bank_size, recipe.evaluation.heldout_size
    return (corpus.bank[:n], corpus.bank_labels[:n], corpus.queries[:m],
            corpus.query_labels[:m])  # fmt: skip


def labelled_speech_splits(
    recipe: Recipe,
) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray], np.ndarray]:
    """The labelled clips of online evaluation: the first ``evaluation.bank_size`` memory-bank
    clips and the first ``evaluation.heldout_size`` queries of
    :func:`ssl_train.speech_data.load_speech_corpus` (spoken digits: the memory-bank voices'
    clips and the held-out voices' clips).

    Returns:
        ``(bank clips (N,), bank_labels (N,) int64, queries (M,), query_labels (M,) int64)``;
        clips ``(T_i,) float32``.
    """
    from ssl_train.speech_data import load_speech_corpus

    corpus = load_speech_corpus(recipe, pretraining=False)
    n, m = recipe.evaluation.bank_size, recipe.evaluation.heldout_size
    return (corpus.bank[:n], corpus.bank_labels[:n], corpus.queries[:m],
            corpus.query_labels[:m])  # fmt: skip
