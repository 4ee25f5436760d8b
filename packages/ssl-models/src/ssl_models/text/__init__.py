"""Text: encoders (BERT-style, GPT-2-style, recurrent, static word vectors), pooling, and the
text objectives (masked LM, causal LM, SimCSE, ELECTRA, ELMo's biLM, skip-gram).

Text methods take dict batches (``input_ids``, ``attention_mask``, ``labels`` where needed),
as ssl-data's text collators make them.
"""

from ssl_models.text.accumulation import accumulate_gradients, total_loss_tokens
from ssl_models.text.base import IGNORE_INDEX, TextSSLMethod, TokenLevelLM
from ssl_models.text.bert import (
    BERT_SIZES,
    BertEncoder,
    bert_base,
    bert_mini,
    bert_small,
    bert_tiny,
)
from ssl_models.text.bilm import BidirectionalLM, bilm_targets
from ssl_models.text.causal_lm import CausalLM, shift_labels
from ssl_models.text.electra import ELECTRA, discriminator_labels
from ssl_models.text.gpt2 import GPT2Decoder
from ssl_models.text.lm_head import TiedLMHead
from ssl_models.text.masked_lm import MaskedLM
from ssl_models.text.padding import check_token_batch, packing_order, position_ids_from_mask
from ssl_models.text.pooling import POOLINGS, pool_tokens
from ssl_models.text.recurrent import RecurrentEncoder
from ssl_models.text.simcse import SimCSE
from ssl_models.text.simcse_loss import SimCSELoss
from ssl_models.text.skip_gram import (
    SkipGram,
    skip_gram_pairs,
    subsample_keep_probability,
    unigram_noise_distribution,
)
from ssl_models.text.word_embedding import WordEmbeddingEncoder
from ssl_models.text.word_vectors import UnknownTokenError, WordVectors

__all__ = [
    "BERT_SIZES",
    "ELECTRA",
    "IGNORE_INDEX",
    "POOLINGS",
    "BertEncoder",
    "BidirectionalLM",
    "CausalLM",
    "GPT2Decoder",
    "MaskedLM",
    "RecurrentEncoder",
    "SimCSE",
    "SimCSELoss",
    "SkipGram",
    "TextSSLMethod",
    "TiedLMHead",
    "TokenLevelLM",
    "UnknownTokenError",
    "WordEmbeddingEncoder",
    "WordVectors",
    "accumulate_gradients",
    "bert_base",
    "bert_mini",
    "bert_small",
    "bert_tiny",
    "bilm_targets",
    "check_token_batch",
    "discriminator_labels",
    "packing_order",
    "pool_tokens",
    "position_ids_from_mask",
    "shift_labels",
    "skip_gram_pairs",
    "subsample_keep_probability",
    "total_loss_tokens",
    "unigram_noise_distribution",
]
