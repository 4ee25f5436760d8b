"""Tokenizers from the Hugging Face ``tokenizers`` library: load ``tokenizer.json``, or train one.

Two recipes, each the field's standard:

- ``"wordpiece"``: BERT's (Devlin et al., arXiv:1810.04805; WordPiece from Wu et al.,
  arXiv:1609.08144): BERT normaliser (optional lowercasing and accent stripping), BERT
  pre-tokeniser (whitespace and punctuation), ``##`` continuation pieces, specials
  ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (ids 0-4) and the post-processor ``[CLS] A [SEP]`` /
  ``[CLS] A [SEP] B [SEP]`` with token type ids 0 for ``A`` (and its ``[CLS]``/``[SEP]``), 1 for
  ``B`` and its ``[SEP]``.
- ``"bpe"``: GPT-2's byte-level BPE (Radford et al. 2019; BPE from Sennrich et al.,
  arXiv:1508.07909): every byte is in the alphabet (no unknown token, lossless decoding), one
  special ``<|endoftext|>`` (id 0) that separates documents (:mod:`ssl_data.text.causal`) and
  doubles as padding, no tokens added around a sequence.

The artefact is one ``tokenizer.json``, which :mod:`ssl_serve` bundles unchanged. Keep it: with
``tokenizers`` <= 0.23, byte-level BPE training is deterministic, but WordPiece training is not
(the ids of ``##`` pieces follow hash-map order and break ties between equally frequent merges,
huggingface/tokenizers#1794), so retraining on the same corpus can give a slightly different
vocabulary.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from ssl_data.datasets.corrupt import CorruptFiles, OnCorrupt
from ssl_data.datasets.text_files import iter_text_files
from ssl_data.errors import CorruptFileError, DatasetNotFoundError

TokenizerKind = Literal["wordpiece", "bpe"]
WORDPIECE_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
BPE_SPECIAL_TOKENS = ("<|endoftext|>",)
TOKENIZER_FILE = "tokenizer.json"


def tokenizer_file(path: str | Path) -> Path:
    """``path`` itself, or ``path/tokenizer.json`` when ``path`` is a folder."""
    p = Path(path)
    return p / TOKENIZER_FILE if p.is_dir() else p


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a ``tokenizers`` tokenizer from ``tokenizer.json`` or a folder that holds one.

    Args:
        path: The JSON file, or a folder containing ``tokenizer.json`` (e.g. a Hugging Face
            model folder or an ssl-serve bundle).

    Returns:
        The :class:`tokenizers.Tokenizer`, with whatever padding/truncation the file sets.

    Raises:
        DatasetNotFoundError: No such file (or the folder has no ``tokenizer.json``).
        CorruptFileError: The file exists but is not a tokenizer the library can read.
    """
    file = tokenizer_file(path)
    if not file.is_file():
        raise DatasetNotFoundError(
            f"no tokenizer at {file}; give a tokenizer.json or a folder holding one (train one "
            "with `ssl-data tokenizer train`)"
        )
    try:
        return Tokenizer.from_file(str(file))
    except Exception as e:  # the library raises bare Exception for malformed JSON
        raise CorruptFileError(f"{file} is not a valid tokenizer.json: {e}") from e


def save_tokenizer(tokenizer: Tokenizer, path: str | Path) -> Path:
    """Write ``tokenizer`` as JSON, atomically (a temporary file, then a rename).

    Args:
        tokenizer: The tokenizer.
        path: The target file, or an existing folder (``tokenizer.json`` inside it). Missing
            parent folders are created.

    Returns:
        The path written.
    """
    file = tokenizer_file(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
    tokenizer.save(str(tmp), pretty=True)
    os.replace(tmp, file)
    return file


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of the special tokens a tokenizer defines (``None`` where it has none).

    Attributes:
        pad_id: Padding: ``[PAD]``, ``<pad>``, else the end-of-text token (GPT-2 convention).
        mask_id: ``[MASK]`` or ``<mask>`` (masked language modelling).
        cls_id: ``[CLS]`` or ``<s>``.
        sep_id: ``[SEP]`` or ``</s>``.
        eos_id: End of text / document: ``<|endoftext|>``, ``</s>``, else ``[SEP]``.
        unk_id: ``[UNK]`` or ``<unk>``.
        all_ids: Every id the tokenizer marks special, sorted.
    """

    pad_id: int | None
    mask_id: int | None
    cls_id: int | None
    sep_id: int | None
    eos_id: int | None
    unk_id: int | None
    all_ids: tuple[int, ...]

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> SpecialTokens:
        """Read the special token ids of ``tokenizer`` (by their conventional names)."""
        special = {
            t.content: i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special
        }

        def first(*names: str) -> int | None:
            return next((special[n] for n in names if n in special), None)

        eos = first("<|endoftext|>", "</s>", "[SEP]")
        return cls(
            pad_id=first("[PAD]", "<pad>", "<|endoftext|>"),
            mask_id=first("[MASK]", "<mask>"),
            cls_id=first("[CLS]", "<s>"),
            sep_id=first("[SEP]", "</s>"),
            eos_id=eos,
            unk_id=first("[UNK]", "<unk>"),
            all_ids=tuple(sorted(special.values())),
        )


def _iter_texts(
    items: Iterable[str | Path], jsonl_field: str | None, corrupt: CorruptFiles
) -> Iterator[str]:
    for item in items:
        if isinstance(item, Path):
            for _, texts in iter_text_files([item], jsonl_field=jsonl_field, corrupt=corrupt):
                yield from texts
        elif isinstance(item, str):
            yield item
        else:
            raise TypeError(
                f"expected a text (str) or a file (pathlib.Path), got {type(item).__name__}"
            )


def build_tokenizer(kind: TokenizerKind, lowercase: bool | None = None) -> Tokenizer:
    """An untrained tokenizer of ``kind`` (its normaliser, pre-tokeniser and decoder set).

    Args:
        kind: ``"wordpiece"`` or ``"bpe"`` (see the module docstring).
        lowercase: Lowercase (and, for WordPiece, strip accents) before tokenising. Default:
            ``True`` for WordPiece (uncased BERT), ``False`` for BPE (GPT-2 is cased).

    Raises:
        ValueError: ``kind`` is neither.
    """
    if kind not in get_args(TokenizerKind):
        raise ValueError(f"kind must be one of {get_args(TokenizerKind)}, got {kind!r}")
    if kind == "wordpiece":
        lower = True if lowercase is None else lowercase
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lower
        )
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        return tok
    tok = Tokenizer(models.BPE())
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def _without_added_tokens(tok: Tokenizer, contents: set[str]) -> Tokenizer:
    """``tok`` without the added-token entries of ``contents`` (they stay in the model's vocab)."""
    spec = json.loads(tok.to_str())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] not in contents]
    return Tokenizer.from_str(json.dumps(spec))


def train_tokenizer(
    texts_or_files: Iterable[str | Path],
    kind: TokenizerKind = "wordpiece",
    vocab_size: int = 8000,
    min_frequency: int = 2,
    lowercase: bool | None = None,
    *,
    jsonl_field: str | None = None,
    on_corrupt: OnCorrupt | CorruptFiles = "skip",
    limit_alphabet: int = 1000,
    show_progress: bool = False,
    output: str | Path | None = None,
) -> Tokenizer:
    """Train a WordPiece (BERT) or byte-level BPE (GPT-2) tokenizer on a corpus.

    Args:
        texts_or_files: Texts (``str``) and/or files (``pathlib.Path``: one text per line, or
            JSONL with ``jsonl_field``; compressed files are read too). A ``str`` is always a
            text, never a path.
        kind: ``"wordpiece"`` or ``"bpe"``.
        vocab_size: Target vocabulary size in tokens, special tokens and alphabet included. A
            small corpus may give fewer (see ``get_vocab_size()``).
        min_frequency: A merge needs at least this many occurrences.
        lowercase: See :func:`build_tokenizer`.
        jsonl_field: For files: read JSONL records' string field of this name.
        on_corrupt: Unreadable files: ``"skip"`` (logged and counted) or ``"raise"``; or a
            :class:`CorruptFiles` to receive the record.
        limit_alphabet: WordPiece only: keep at most this many distinct characters.
        show_progress: Let the library draw its progress bars.
        output: If given, save the result there (see :func:`save_tokenizer`).

    Returns:
        The trained tokenizer. WordPiece gets BERT's post-processor (``[CLS] A [SEP]``,
        ``[CLS] A [SEP] B [SEP]`` with token type ids); BPE gets the byte-level one (nothing
        added).

    Raises:
        ValueError: Bad ``kind``, ``vocab_size`` below the number of special tokens, or
            ``min_frequency`` < 1.
        TypeError: An item is neither ``str`` nor ``Path``.
        DatasetNotFoundError: A file does not exist.
        CorruptFileError: A file is unreadable and ``on_corrupt="raise"``.

    Reference: Devlin et al., arXiv:1810.04805 (BERT); Sennrich et al., arXiv:1508.07909 (BPE).
    """
    specials = WORDPIECE_SPECIAL_TOKENS if kind == "wordpiece" else BPE_SPECIAL_TOKENS
    if vocab_size <= len(specials):
        raise ValueError(f"vocab_size must exceed {len(specials)} special tokens, got {vocab_size}")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    corrupt = on_corrupt if isinstance(on_corrupt, CorruptFiles) else CorruptFiles(on_corrupt)
    if kind == "wordpiece":
        # The trainer numbers continuation tokens ("##a") in the iteration order of a Rust hash
        # map, which changes from process to process, and breaks ties between equally
        # frequent merges by those numbers, so the same corpus could give another vocabulary
        # (huggingface/tokenizers#1794). A first pass finds them; the second pins them, in
        # string order, right after the special tokens, so every run gets the same tokenizer.
        items = texts_or_files if isinstance(texts_or_files, list | tuple) else list(texts_or_files)

        def wordpiece(pinned: Sequence[str], record: CorruptFiles) -> Tokenizer:
            trained = build_tokenizer(kind, lowercase)
            trainer = trainers.WordPieceTrainer(
                vocab_size=vocab_size,
                min_frequency=min_frequency,
                special_tokens=[*specials, *pinned],
                limit_alphabet=limit_alphabet,
                continuing_subword_prefix="##",
                show_progress=show_progress,
            )
            trained.train_from_iterator(_iter_texts(items, jsonl_field, record), trainer=trainer)
            return trained

        first = wordpiece([], CorruptFiles(corrupt.policy))
        continuation = sorted(t for t in first.get_vocab() if t.startswith("##") and len(t) == 3)
        tok = _without_added_tokens(wordpiece(continuation, corrupt), set(continuation))
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
    else:
        tok = build_tokenizer(kind, lowercase)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(specials),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=show_progress,
        )
        tok.train_from_iterator(_iter_texts(texts_or_files, jsonl_field, corrupt), trainer=trainer)
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    if output is not None:
        save_tokenizer(tok, output)
    return tok
