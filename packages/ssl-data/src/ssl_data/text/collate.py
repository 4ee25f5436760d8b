"""Tokenise and pad texts or sentence pairs into a batch of ``(B, L) int64`` tensors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer

from ssl_data.text.tokenizer import SpecialTokens

PaddingSide = Literal["right", "left"]
TextInput = str | tuple[str, str]


def collate_encodings(
    encodings: Sequence[Encoding],
    pad_id: int,
    padding_side: PaddingSide = "right",
    pad_to_multiple_of: int | None = None,
) -> dict[str, torch.Tensor]:
    """Pad ``tokenizers`` encodings (unpadded, of any lengths) into one batch.

    Args:
        encodings: One ``tokenizers.Encoding`` per sample (e.g. made in DataLoader workers).
        pad_id: Id written at padding positions.
        padding_side: ``"right"`` (BERT) or ``"left"`` (decoder-only generation).
        pad_to_multiple_of: Round the length up to a multiple of this many tokens.

    Returns:
        Each ``(B, L) int64``, ``L`` the longest encoding (rounded up):
        ``input_ids``; ``attention_mask`` (1 real, 0 padding); ``token_type_ids`` (0 first
        sequence, 1 second, 0 padding); ``special_tokens_mask`` (1 at special tokens and
        padding); ``word_ids`` (index of the word in its sequence, -1 at specials and padding).

    Raises:
        ValueError: Empty ``encodings``, bad ``padding_side`` or ``pad_to_multiple_of`` < 1.
    """
    if not encodings:
        raise ValueError("cannot collate an empty batch")
    if padding_side not in get_args(PaddingSide):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    length = max(len(e.ids) for e in encodings)
    if pad_to_multiple_of is not None:
        if pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be >= 1, got {pad_to_multiple_of}")
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    batch = len(encodings)
    fields = {
        "input_ids": np.full((batch, length), pad_id, dtype=np.int64),
        "attention_mask": np.zeros((batch, length), dtype=np.int64),
        "token_type_ids": np.zeros((batch, length), dtype=np.int64),
        "special_tokens_mask": np.ones((batch, length), dtype=np.int64),
        "word_ids": np.full((batch, length), -1, dtype=np.int64),
    }
    for i, e in enumerate(encodings):
        n = len(e.ids)
        cols = slice(0, n) if padding_side == "right" else slice(length - n, length)
        fields["input_ids"][i, cols] = e.ids
        fields["attention_mask"][i, cols] = 1
        fields["token_type_ids"][i, cols] = e.type_ids
        fields["special_tokens_mask"][i, cols] = e.special_tokens_mask
        fields["word_ids"][i, cols] = [-1 if w is None else w for w in e.word_ids]
    return {k: torch.from_numpy(v) for k, v in fields.items()}


class TextCollator:
    """Tokenise texts or sentence pairs and pad them into a batch.

    The tokenizer is copied, so its own padding/truncation settings are left alone. Pairs get
    the tokenizer's pair template (for BERT's WordPiece: ``[CLS] A [SEP] B [SEP]``, token type
    ids 0 then 1); truncation removes tokens from the longer of the two first.

    Args:
        tokenizer: A ``tokenizers.Tokenizer`` (e.g. from :func:`~ssl_data.text.load_tokenizer`).
        max_length: Truncate each sample to this many tokens, specials included (``None``: no
            truncation).
        padding_side: ``"right"`` or ``"left"``.
        pad_to_multiple_of: Round the batch length up to a multiple of this many tokens.
        pad_id: Padding id (default: the tokenizer's ``[PAD]``/``<pad>``, else its end-of-text).

    Raises:
        ValueError: No padding id can be found, ``max_length`` < 1, or bad ``padding_side``.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        max_length: int | None = 512,
        padding_side: PaddingSide = "right",
        pad_to_multiple_of: int | None = None,
        pad_id: int | None = None,
    ):
        if padding_side not in get_args(PaddingSide):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be >= 1 token, got {max_length}")
        special = SpecialTokens.of(tokenizer)
        resolved = pad_id if pad_id is not None else special.pad_id
        if resolved is None:
            raise ValueError("the tokenizer has no [PAD], <pad> or <|endoftext|>; pass pad_id")
        self.pad_id: int = resolved
        self.padding_side: PaddingSide = padding_side
        self.pad_to_multiple_of = pad_to_multiple_of
        self.max_length = max_length
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_padding()
        if max_length is None:
            self.tokenizer.no_truncation()
        else:
            self.tokenizer.enable_truncation(max_length, strategy="longest_first")

    def encode(self, texts: Sequence[TextInput]) -> list[Encoding]:
        """Tokenise without padding: one ``Encoding`` per text or ``(first, second)`` pair.

        Raises:
            TypeError: An item is neither a string nor a pair of strings.
        """
        items: list[str | tuple[str, str]] = []
        for t in texts:
            if isinstance(t, str):
                items.append(t)
            elif isinstance(t, tuple | list) and len(t) == 2 and all(isinstance(s, str) for s in t):
                items.append((t[0], t[1]))
            else:
                raise TypeError(f"expected a text or a (first, second) pair of texts, got {t!r}")
        return self.tokenizer.encode_batch(items)

    def __call__(self, texts: Sequence[TextInput]) -> dict[str, torch.Tensor]:
        """Tokenise and pad a batch.

        Args:
            texts: ``B`` texts, or ``B`` ``(first, second)`` sentence pairs.

        Returns:
            See :func:`collate_encodings`: ``input_ids``, ``attention_mask``,
            ``token_type_ids``, ``special_tokens_mask``, ``word_ids``, each ``(B, L) int64``.

        Raises:
            ValueError: Empty batch.
            TypeError: An item is neither a string nor a pair of strings.
        """
        return collate_encodings(
            self.encode(texts), self.pad_id, self.padding_side, self.pad_to_multiple_of
        )
