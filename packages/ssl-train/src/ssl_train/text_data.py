"""The training data of a text recipe: a corpus, its tokenizer, and the text view generators.

A text recipe (``data.dataset``: ``wordnet``, ``fortunes`` or ``text_file``) gives the trainer
the same three things an image recipe does (:class:`TextData`): how many samples there are, a
deterministic batch for any (indices, epoch), and real example inputs for the checkpoint. Texts
are tokenised once when the run starts; a batch is padded on the right and, for masked language
modelling, masked by ssl-data's :class:`~ssl_data.text.MLMMasking`, whose choices are functions
of (seed, epoch, sample index), so an exact resume needs no masking state.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from ssl_data import load_fortunes, load_wordnet_glosses
from ssl_data.datasets.corrupt import CorruptFiles
from ssl_data.datasets.text_files import iter_text_files
from ssl_data.text import (
    MLMMasking,
    SpecialTokens,
    TextCollator,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)
from ssl_data.text.collate import collate_encodings
from ssl_train.errors import RecipeError, SslTrainError
from ssl_train.recipe import Recipe
from ssl_train.skip_gram_data import SkipGramPairs, SkipGramPairsView, skip_gram_settings

logger = logging.getLogger("ssl_train")
EXAMPLE_INPUTS = 64
TOKENIZER_FILE = "tokenizer.json"
HF_FOLDER = "hf"
#: The keys of a text batch the methods read (the collator's others stay on the data side).
BATCH_KEYS = ("input_ids", "attention_mask", "labels")
#: Seed of the memory-bank/query split of a labelled corpus (as ``ssl_train.data``'s).
EVAL_SPLIT_SEED = 0


@dataclass(frozen=True)
class MLMMaskingView:
    """BERT's masked language modelling masks (ssl-data's :class:`~ssl_data.text.MLMMasking`).

    A share ``mask_probability`` of the real tokens is selected (never special tokens or
    padding); of those, ``mask_replace_probability`` become ``[MASK]``,
    ``random_replace_probability`` a random token, the rest stay. Every choice is a function of
    (recipe seed, epoch, sample index).

    Reference: Devlin et al., "BERT", arXiv:1810.04805, section 3.1; Joshi et al., "SpanBERT",
    arXiv:1907.10529 (``strategy: span``).
    """

    mask_probability: float = 0.15
    mask_replace_probability: float = 0.8
    random_replace_probability: float = 0.1
    strategy: str = "token"
    span_geometric_p: float = 0.2
    max_span_length: int = 10

    def __post_init__(self) -> None:
        self.masking(None, 0)  # validates every value

    def masking(self, tokenizer: Tokenizer | None, seed: int) -> MLMMasking:
        """The masking for ``tokenizer`` (None: a placeholder vocabulary, to validate)."""
        kwargs: dict[str, Any] = dataclasses.asdict(self)
        if tokenizer is None:
            return MLMMasking(mask_token_id=0, vocab_size=8, seed=seed, **kwargs)
        return MLMMasking.from_tokenizer(tokenizer, seed=seed, **kwargs)


@dataclass(frozen=True)
class TokensView:
    """The tokens as they are: SimCSE's two views are two dropout masks of the same tokens
    (arXiv:2104.08821); causal LM predicts every next token (its labels are made inside)."""


#: Text view generators by name (``views.name`` of a text recipe).
TEXT_VIEWS: dict[str, type] = {
    "mlm_masking": MLMMaskingView,
    "tokens": TokensView,
    "skip_gram_pairs": SkipGramPairsView,
}
#: The text methods a recipe can train, and the views each takes. ELMo's biLM predicts the
#: next and previous tokens (its targets are made inside, like causal LM's); skip-gram trains
#: on word pairs with negatives made here (:mod:`ssl_train.skip_gram_data`).
TEXT_METHODS: dict[str, tuple[str, ...]] = {
    "masked_lm": ("mlm_masking",),
    "simcse": ("tokens",),
    "causal_lm": ("tokens",),
    "electra": ("mlm_masking",),
    "bilm": ("tokens",),
    "skip_gram": ("skip_gram_pairs",),
}
TextView = MLMMaskingView | TokensView | SkipGramPairsView


def build_text_views(recipe: Recipe) -> TextView:
    """The text view generator a recipe names, checked against its method.

    Raises:
        KeyError: ``views.name`` is not a text view (an image view generator, for instance).
        TypeError: An argument the view does not take.
        ValueError: A value it rejects, or a view the method cannot train with.
    """
    kwargs = dict(recipe.views)
    name = kwargs.pop("name", None)
    if name not in TEXT_VIEWS:
        known = [
            f"{v} ({'/'.join(m for m, vs in TEXT_METHODS.items() if v in vs)})" for v in TEXT_VIEWS
        ]
        raise KeyError(
            f"{name!r} is not a text view generator; data.dataset {recipe.data.dataset} is text, "
            f"whose views are: {', '.join(known)}; leave views out for the method's default"
        )
    view: TextView = TEXT_VIEWS[name](**kwargs)
    method = recipe.method.get("name")
    allowed = TEXT_METHODS.get(str(method), ())
    if allowed and name not in allowed:
        raise ValueError(
            f"method {method!r} trains with views.name {' or '.join(allowed)}, not {name!r}"
        )
    return view


def check_text_method(recipe: Recipe) -> None:
    """Raise ``ValueError`` when the recipe's method is not a text method."""
    method = recipe.method.get("name")
    if method not in TEXT_METHODS:
        raise ValueError(
            f"{method!r} is not a text method; data.dataset {recipe.data.dataset} is text: use "
            f"{', '.join(TEXT_METHODS)}"
        )


@dataclass
class TextCorpus:
    """A text dataset, split for pretraining and kNN evaluation.

    Attributes:
        train: The pretraining texts (labelled corpora: the memory-bank part, shuffled by the
            split, first ``data.limit``).
        bank: Labelled memory-bank texts (all of the bank part; empty when unlabelled).
        bank_labels: ``(N,) int64``.
        queries: Held-out labelled texts, never pretrained on (empty when unlabelled).
        query_labels: ``(M,) int64``.
        label_names: Class names of the label ids (empty when unlabelled).
    """

    train: list[str]
    bank: list[str]
    bank_labels: np.ndarray
    queries: list[str]
    query_labels: np.ndarray
    label_names: tuple[str, ...]

    @property
    def labelled(self) -> bool:
        """Whether kNN evaluation is possible."""
        return len(self.queries) > 0


def _text_file_texts(recipe: Recipe) -> list[str]:
    d = recipe.data
    if d.path is None:
        raise RecipeError(
            "data.path is not set: data.dataset text_file needs a text file (one text per "
            "line, or JSONL with data.jsonl_field) or a folder of them"
        )
    root = Path(d.path)
    if not root.exists():
        raise RecipeError(f"data.path: {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    corrupt = CorruptFiles(d.on_corrupt)
    texts = [t for _, ts in iter_text_files(files, jsonl_field=d.jsonl_field, corrupt=corrupt)
             for t in ts]  # fmt: skip
    if not texts:
        raise RecipeError(
            f"data.path: no text in {root} ({len(corrupt.skipped)} unreadable file(s))"
        )
    return texts


def load_text_corpus(recipe: Recipe) -> TextCorpus:
    """The recipe's texts: ``wordnet`` / ``fortunes`` split per class into memory bank and
    ``data.eval_test_fraction`` of queries (seed 0, whatever the run's seed; the bank part is
    the pretraining text), or every text of ``text_file`` (unlabelled).

    Raises:
        RecipeError: ``text_file`` without ``data.path``, a missing path or no text.
    """
    from ssl_train.data import split_bank_queries

    d = recipe.data
    start = time.perf_counter()
    if d.dataset == "text_file":
        texts = _text_file_texts(recipe)[: d.limit]
        empty = np.empty(0, dtype=np.int64)
        corpus = TextCorpus(texts, [], empty, [], empty, ())
    else:
        loader = load_wordnet_glosses if d.dataset == "wordnet" else load_fortunes
        loaded = loader(root=d.root)
        labels = np.asarray(loaded.labels, dtype=np.int64)
        bank, queries = split_bank_queries(labels, d.eval_test_fraction)
        bank_texts = [loaded.texts[i] for i in bank]
        corpus = TextCorpus(
            bank_texts[: d.limit], bank_texts, labels[bank], [loaded.texts[i] for i in queries],
            labels[queries], tuple(loaded.label_names),
        )  # fmt: skip
    logger.info(
        "data.dataset %s: %d pretraining texts, %d labelled memory-bank texts, %d held-out "
        "queries, %.1f s",
        d.dataset, len(corpus.train), len(corpus.bank), len(corpus.queries),
        time.perf_counter() - start,
    )  # fmt: skip
    return corpus


def prepare_tokenizer(recipe: Recipe, run_dir: Path, texts: list[str], is_main: bool) -> Tokenizer:
    """The run's tokenizer: ``run_dir/tokenizer.json`` if it is there (a resume), else copied
    from ``tokenizer.path`` or trained on ``texts`` (by rank 0) and saved there.

    Raises:
        SslTrainError: The recipe has no tokenizer section.
    """
    cfg = recipe.tokenizer
    if cfg is None:
        raise SslTrainError(f"data.dataset {recipe.data.dataset} needs a tokenizer section")
    file = run_dir / TOKENIZER_FILE
    if not is_main or file.is_file():
        return load_tokenizer(file)
    if cfg.path is not None:
        tokenizer = load_tokenizer(cfg.path)
    else:
        assert cfg.train is not None  # TokenizerConfig checks one of the two is set
        start = time.perf_counter()
        t = cfg.train
        tokenizer = train_tokenizer(texts, kind=t.kind, vocab_size=t.vocab_size,
                                    min_frequency=t.min_frequency, lowercase=t.lowercase)  # fmt: skip
        logger.info(
            "tokenizer: %s with %d tokens trained on %d texts in %.1f s",
            t.kind, tokenizer.get_vocab_size(), len(texts), time.perf_counter() - start,
        )  # fmt: skip
    save_tokenizer(tokenizer, file)
    return load_tokenizer(file)  # what a resume reads, bit for bit


def run_tokenizer(checkpoint_or_run: Path) -> Tokenizer:
    """The tokenizer of a text run, from a run folder or one of its checkpoint folders.

    Raises:
        SslTrainError: Neither the folder nor its run folder holds ``tokenizer.json``.
    """
    folder = Path(checkpoint_or_run)
    for candidate in (folder, folder.parent.parent):
        if (candidate / TOKENIZER_FILE).is_file():
            return load_tokenizer(candidate / TOKENIZER_FILE)
    raise SslTrainError(
        f"no {TOKENIZER_FILE} in {folder} or its run folder: a text run saves its tokenizer there"
    )


class TextData:
    """The pretraining texts of a run, tokenised once, and their batches.

    Args:
        recipe: ``data.max_length``, ``views`` (masking), ``seed``.
        tokenizer: The run's tokenizer.
        corpus: The texts (:func:`load_text_corpus`).

    Attributes:
        num_samples: Pretraining texts.
        token_counts: ``(num_samples,) int64`` tokens of each text after truncation.
    """

    unit = "texts"

    def __init__(self, recipe: Recipe, tokenizer: Tokenizer, corpus: TextCorpus) -> None:
        self.recipe = recipe
        self.tokenizer = tokenizer
        self.corpus = corpus
        self.collator = TextCollator(tokenizer, max_length=recipe.data.max_length)
        self.encodings = self.collator.encode(corpus.train)
        self.token_counts = np.asarray([len(e.ids) for e in self.encodings], dtype=np.int64)
        self.num_samples = len(self.encodings)
        view = build_text_views(recipe)
        self.masking = (
            view.masking(tokenizer, recipe.seed) if isinstance(view, MLMMaskingView) else None
        )
        self.skip_gram: SkipGramPairs | None = None
        if isinstance(view, SkipGramPairsView):
            window, negatives, power = skip_gram_settings(recipe.method)
            self.skip_gram = SkipGramPairs(
                [np.asarray(e.ids, dtype=np.int64) for e in self.encodings],
                tokenizer.get_vocab_size(), view, window, negatives, power, recipe.seed,
                SpecialTokens.of(tokenizer).all_ids,
            )  # fmt: skip

    def batch(self, indices: np.ndarray, epoch: int) -> dict[str, torch.Tensor]:
        """The batch of ``indices``: ``input_ids``, ``attention_mask`` (and ``labels`` for MLM),
        each ``(B, L) int64``, right-padded to the longest text; for skip-gram the texts' word
        pairs instead (:meth:`ssl_train.skip_gram_data.SkipGramPairs.batch`). The same for the
        same (indices, epoch) in any process."""
        if self.skip_gram is not None:
            return self.skip_gram.batch(indices, epoch)
        b = collate_encodings([self.encodings[i] for i in indices], self.collator.pad_id)
        if self.masking is not None:
            b = self.masking.mask_batch(b, indices, epoch)
        return {k: b[k] for k in BATCH_KEYS if k in b}

    def tokens(self, indices: np.ndarray) -> int:
        """Real tokens (padding excluded) of the texts at ``indices``."""
        return int(self.token_counts[indices].sum())

    def example_inputs(self) -> dict[str, torch.Tensor]:
        """The first 64 pretraining texts, tokenised and padded (no masking), for export checks."""
        b = self.collator(self.corpus.train[:EXAMPLE_INPUTS])
        return {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}


def load_text_data(recipe: Recipe, run_dir: Path, is_main: bool, barrier: Any) -> TextData:
    """Corpus and tokenizer of a text run (rank 0 trains or copies the tokenizer, then every
    rank reads ``run_dir/tokenizer.json``)."""
    corpus = load_text_corpus(recipe)
    if is_main:
        prepare_tokenizer(recipe, run_dir, corpus.train, True)
    barrier()
    tokenizer = prepare_tokenizer(recipe, run_dir, corpus.train, False)
    return TextData(recipe, tokenizer, corpus)


def encoder_config(recipe: Recipe, vocab_size: int | None) -> dict[str, Any]:
    """``recipe.encoder`` with ``vocab_size`` filled in from the tokenizer (text recipes).

    Raises:
        SslTrainError: A text recipe without a vocabulary size, or an ``encoder.vocab_size`` that
            differs from the tokenizer's.
    """
    config = dict(recipe.encoder)
    if not recipe.data.is_text:
        return config
    if vocab_size is None:
        if "vocab_size" not in config:
            raise SslTrainError("a text recipe's encoder takes its vocab_size from the tokenizer")
        return config
    given = config.setdefault("vocab_size", vocab_size)
    if given != vocab_size:
        raise SslTrainError(
            f"encoder.vocab_size={given} but the run's tokenizer has {vocab_size} tokens; leave "
            "encoder.vocab_size out to follow the tokenizer"
        )
    return config


def write_hf_model(model: torch.nn.Module, recipe: Recipe, run_dir: Path) -> Path | None:
    """Write the encoder of a text run as a Hugging Face model folder, ``run_dir/hf``.

    ``config.json`` and ``model.safetensors`` (transformers' ``save_pretrained`` of the
    encoder's ``BertModel``), the run's ``tokenizer.json`` with a ``tokenizer_config.json``
    (``model_max_length`` = ``data.max_length``), and sentence-transformers'
    ``1_Pooling/config.json`` and ``sentence_bert_config.json`` so ``ssl-serve export
    --hf-model`` pools as the method does. Written to a temporary folder, then renamed.

    Returns:
        The folder, or None (logged) when the encoder is not a BERT-style transformers model.
    """
    from transformers import PreTrainedModel

    encoder = getattr(model, "encoder", None)
    network = getattr(encoder, "bert", None)
    pooling = getattr(encoder, "pooling", "mean")
    if not isinstance(network, PreTrainedModel) or pooling not in ("mean", "cls", "max"):
        logger.info(
            "no Hugging Face folder written: the export takes BERT-style encoders pooled by "
            "mean, cls or max (this one: %s, pooling %s)", type(encoder).__name__, pooling,
        )  # fmt: skip
        return None
    out = run_dir / HF_FOLDER
    tmp = run_dir / f".{HF_FOLDER}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    network.save_pretrained(str(tmp), safe_serialization=True)
    shutil.copyfile(run_dir / TOKENIZER_FILE, tmp / TOKENIZER_FILE)
    tokenizer = load_tokenizer(run_dir / TOKENIZER_FILE)
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    names = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]",
             "sep_token": "[SEP]", "mask_token": "[MASK]"}  # fmt: skip
    tok_config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": recipe.data.max_length,
        **{k: v for k, v in names.items() if v in special},
    }
    (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    (tmp / "1_Pooling").mkdir()
    modes = {f"pooling_mode_{m}": pooling == p for p, m in
             (("cls", "cls_token"), ("mean", "mean_tokens"), ("max", "max_tokens"))}  # fmt: skip
    pool_cfg = {"word_embedding_dimension": int(network.config.hidden_size), **modes}
    (tmp / "1_Pooling" / "config.json").write_text(json.dumps(pool_cfg, indent=2) + "\n")
    st = {"max_seq_length": recipe.data.max_length, "do_lower_case": False}
    (tmp / "sentence_bert_config.json").write_text(json.dumps(st, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    logger.info("Hugging Face model folder: %s (ssl-serve export --hf-model %s)", out, out)
    return out
