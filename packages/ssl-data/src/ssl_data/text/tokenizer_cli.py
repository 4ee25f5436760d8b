"""``ssl-data tokenizer train``: train a WordPiece or BPE tokenizer on text files."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ssl_data.datasets.corrupt import CorruptFiles
from ssl_data.datasets.text_files import iter_text_files
from ssl_data.errors import DatasetNotFoundError
from ssl_data.text.tokenizer import TOKENIZER_FILE, save_tokenizer, train_tokenizer


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _output_file(path: Path) -> Path:
    # An existing folder or a name without .json is a folder to hold tokenizer.json.
    if path.is_dir() or path.suffix != ".json":
        return path / TOKENIZER_FILE
    return path


def add_subcommand(subparsers: Any) -> None:
    """Register ``tokenizer`` (with its ``train`` action) on an ``argparse`` subparsers object.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers()`` returned.
    """
    parser = subparsers.add_parser(
        "tokenizer",
        help="train tokenizers (tokenizer.json)",
        description="Tokenizer tools built on the Hugging Face `tokenizers` library.",
    )
    actions = parser.add_subparsers(dest="tokenizer_command", required=True, metavar="ACTION")
    train = actions.add_parser(
        "train",
        help="train a WordPiece (BERT) or byte-level BPE (GPT-2) tokenizer on text files",
        description=(
            "Train a tokenizer on text files (one text per line, or JSONL with --jsonl-field; "
            ".gz/.bz2/.xz are decompressed) and write it as tokenizer.json. WordPiece gets "
            "BERT's specials [PAD] [UNK] [CLS] [SEP] [MASK] and its [CLS] A [SEP] B [SEP] "
            "template; BPE is GPT-2's byte-level BPE with <|endoftext|>. Unreadable files are "
            "skipped and counted (or stop the run with --on-corrupt raise)."
        ),
        epilog=(
            "example: ssl-data tokenizer train --kind wordpiece --vocab-size 8000 "
            "--output out/tokenizer.json corpus/*.txt"
        ),
    )
    train.add_argument("files", nargs="+", type=Path, metavar="FILE", help="training text files")
    train.add_argument(
        "--output",
        "-o",
        type=Path,
        required=True,
        help="where to write: a .json file, or a folder (created if needed; tokenizer.json inside)",
    )
    train.add_argument(
        "--kind",
        choices=("wordpiece", "bpe"),
        default="wordpiece",
        help="wordpiece: BERT-style (default); bpe: GPT-2-style byte-level BPE",
    )
    train.add_argument(
        "--vocab-size",
        type=_positive_int,
        default=8000,
        help="target vocabulary size in tokens, specials included (default: 8000)",
    )
    train.add_argument(
        "--min-frequency",
        type=_positive_int,
        default=2,
        help="minimum count of a merged pair (default: 2)",
    )
    train.add_argument(
        "--lowercase",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="lowercase the text (default: yes for wordpiece, no for bpe)",
    )
    train.add_argument(
        "--jsonl-field",
        metavar="NAME",
        default=None,
        help="read the files as JSONL and take this string field of each record",
    )
    train.add_argument(
        "--on-corrupt",
        choices=("skip", "raise"),
        default="skip",
        help="unreadable files: skip and count them (default) or stop with an error",
    )
    train.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    train.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Run ``ssl-data tokenizer train`` with parsed ``args``; returns the exit status (0).

    Prints a progress bar over the files while reading them (stderr), then one summary line
    (stdout): kind, vocabulary size, texts, characters, skipped files, seconds, output path.

    Raises:
        DatasetNotFoundError: A file does not exist, or every file was empty or skipped.
        CorruptFileError: A file is unreadable and ``--on-corrupt raise``.
    """
    start = time.perf_counter()
    corrupt = CorruptFiles(args.on_corrupt)
    texts: list[str] = []
    chars = 0
    bar = tqdm(args.files, desc="reading", unit="file", disable=args.quiet, file=sys.stderr)
    for _, file_texts in iter_text_files(bar, jsonl_field=args.jsonl_field, corrupt=corrupt):
        texts += file_texts
        chars += sum(len(t) for t in file_texts)
        bar.set_postfix(texts=len(texts))
    bar.close()
    if not texts:
        raise DatasetNotFoundError(
            f"no text to train on in {len(args.files)} file(s) ({corrupt.count} skipped as unreadable)"
        )
    tok = train_tokenizer(
        texts,
        kind=args.kind,
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        lowercase=args.lowercase,
        show_progress=not args.quiet,
    )
    out = save_tokenizer(tok, _output_file(args.output))
    print(
        f"trained {args.kind} tokenizer: {tok.get_vocab_size():,} tokens (asked {args.vocab_size:,}) "
        f"from {len(texts):,} texts, {chars:,} characters, {len(args.files) - corrupt.count} "
        f"file(s) read, {corrupt.count} skipped, in {time.perf_counter() - start:.1f} s -> {out}"
    )
    return 0
