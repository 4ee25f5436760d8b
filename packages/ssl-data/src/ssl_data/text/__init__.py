"""Text: tokenizers (load, train), MLM masking, causal LM packing, sentence pairs, collation."""

from ssl_data.text.causal import iter_causal_blocks, pack_causal_blocks
from ssl_data.text.collate import TextCollator, collate_encodings
from ssl_data.text.mlm import IGNORE_INDEX, MLMMasking, sample_span_lengths, span_length_pmf
from ssl_data.text.pairs import NextSentencePairs, SentencePair, collate_sentence_pairs
from ssl_data.text.tokenizer import (
    SpecialTokens,
    build_tokenizer,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)

__all__ = [
    "IGNORE_INDEX",
    "MLMMasking",
    "NextSentencePairs",
    "SentencePair",
    "SpecialTokens",
    "TextCollator",
    "build_tokenizer",
    "collate_encodings",
    "collate_sentence_pairs",
    "iter_causal_blocks",
    "load_tokenizer",
    "pack_causal_blocks",
    "sample_span_lengths",
    "save_tokenizer",
    "span_length_pmf",
    "train_tokenizer",
]
