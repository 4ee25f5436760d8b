"""Speech: the wav2vec 2.0 encoder, utterance pooling, and the pieces of the wav2vec 2.0 and
HuBERT objectives.

The methods themselves live in :mod:`ssl_models.speech.wav2vec2` (``Wav2Vec2``) and
:mod:`ssl_models.speech.hubert` (``HuBERT``) and are re-exported by :mod:`ssl_models.methods`;
this package does not import them, so that the encoder registry can import the encoder from here
without a cycle through the method registry.
"""

from ssl_models.speech.contrastive_loss import wav2vec2_contrastive_loss
from ssl_models.speech.diversity_loss import codebook_diversity_loss, codebook_perplexity
from ssl_models.speech.encoder import SpeechEncoder, SpeechFrames
from ssl_models.speech.kmeans_targets import (
    align_labels_to_frames,
    assign_clusters,
    fit_cluster_centers,
)
from ssl_models.speech.masked_prediction_loss import cluster_logits, masked_prediction_loss
from ssl_models.speech.negative_sampling import has_negatives, sample_negative_indices
from ssl_models.speech.pooling import mean_pool_frames

__all__ = [
    "SpeechEncoder",
    "SpeechFrames",
    "align_labels_to_frames",
    "assign_clusters",
    "cluster_logits",
    "codebook_diversity_loss",
    "codebook_perplexity",
    "fit_cluster_centers",
    "has_negatives",
    "masked_prediction_loss",
    "mean_pool_frames",
    "sample_negative_indices",
    "wav2vec2_contrastive_loss",
]
