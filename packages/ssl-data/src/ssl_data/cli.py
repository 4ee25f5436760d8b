"""The ``ssl-data`` command line: data preparation tools (tokenizers, shards)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ssl_data.errors import SslDataError

# Each module defines ``add_subcommand(subparsers)``, which adds its parser and sets ``func``
# (called with the parsed namespace, returns an exit status).
COMMAND_MODULES = ("ssl_data.text.tokenizer_cli", "ssl_data.datasets.shards_cli")


def build_parser() -> argparse.ArgumentParser:
    """The ``ssl-data`` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="ssl-data",
        description="Prepare data for self-supervised pretraining: train tokenizers, write shards.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_subcommand(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ssl-data``; returns the exit status (2 for bad input, with a message)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SslDataError as e:
        print(f"ssl-data: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
