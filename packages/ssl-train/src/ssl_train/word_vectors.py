"""The word vectors of a skip-gram run: written as ``RUN/word_vectors.txt``, read back as a
cosine nearest-neighbour lookup.

Format: word2vec's text format (the C tool's ``-binary 0`` output, which gensim reads with
``KeyedVectors.load_word2vec_format(path, binary=False)``): UTF-8, a header line ``V D``, then
one line per token id ``0..V-1``: the token string of the run's ``tokenizer.json`` and its D
input ("word") vector components as decimal floats (9 significant digits: float32 exactly),
separated by single spaces. Row ``i`` is token id
``i``, special tokens included (they are never trained and keep their initial values).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from ssl_models.text import WordVectors
from ssl_train.errors import SslTrainError

WORD_VECTORS_FILE = "word_vectors.txt"


def write_word_vectors(model: nn.Module, tokenizer: Tokenizer, run_dir: Path) -> Path | None:
    """Write the input vectors of a skip-gram model as ``run_dir/word_vectors.txt``.

    Args:
        model: The trained method; anything whose encoder has no ``word_embeddings`` table of
            the tokenizer's size is skipped.
        tokenizer: The run's tokenizer (token strings by id).
        run_dir: The run folder (written to a temporary file, then renamed).

    Returns:
        The file, or None when the model has no word-vector table.
    """
    table = getattr(getattr(model, "encoder", None), "word_embeddings", None)
    size = tokenizer.get_vocab_size()
    if not isinstance(table, nn.Embedding) or table.num_embeddings != size:
        return None
    vocab = tokenizer.get_vocab()
    tokens = [""] * size
    for token, i in vocab.items():
        tokens[i] = token
    vectors = table.weight.detach().to("cpu", torch.float32).numpy()
    out = Path(run_dir) / WORD_VECTORS_FILE
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8", newline="\n") as f:
        f.write(f"{size} {vectors.shape[1]}\n")
        for token, row in zip(tokens, vectors, strict=True):
            f.write(token + " " + " ".join(f"{x:.9g}" for x in row) + "\n")
    os.replace(tmp, out)
    return out


def load_word_vectors(path: str | Path) -> WordVectors:
    """Read word vectors in word2vec's text format (a run folder or the file itself).

    Args:
        path: ``RUN`` (reads ``RUN/word_vectors.txt``) or a ``.txt`` file in the format above.

    Returns:
        A :class:`~ssl_models.text.WordVectors`: ``wv["tree"]`` is a ``(D,) float32`` vector,
        ``wv.most_similar("tree", topn=10)`` the nearest tokens by cosine similarity.

    Raises:
        SslTrainError: The file is missing or malformed (the message names the line).

    Reference: Mikolov et al., arXiv:1310.4546 (the vectors); word2vec's text format.
    """
    file = Path(path)
    if file.is_dir():
        file = file / WORD_VECTORS_FILE
    if not file.is_file():
        raise SslTrainError(
            f"no word vectors at {file}: a skip_gram run writes {WORD_VECTORS_FILE}"
        )
    lines = file.read_text(encoding="utf-8").splitlines()
    try:
        size, dim = (int(x) for x in lines[0].split())
    except (IndexError, ValueError):
        raise SslTrainError(f"{file}: line 1 must be 'V D' (two integers)") from None
    if len(lines) != size + 1:
        raise SslTrainError(f"{file}: header says {size} vectors, found {len(lines) - 1} lines")
    tokens: list[str] = []
    vectors = np.empty((size, dim), dtype=np.float32)
    for i, line in enumerate(lines[1:]):
        token, values = _split(line, dim)
        try:
            vectors[i] = np.asarray(values.split(), dtype=np.float32)
        except ValueError:
            raise SslTrainError(
                f"{file}: line {i + 2} must hold a token and {dim} floats"
            ) from None
        tokens.append(token)
    return WordVectors(tokens, torch.from_numpy(vectors))


def _split(line: str, dim: int) -> tuple[str, str]:
    """``(token, values)``: the last ``dim`` fields are the vector (a token may hold spaces in
    other tools' files)."""
    parts = line.rstrip().rsplit(" ", dim)
    return parts[0], " ".join(parts[1:])
