"""Datasets: real image, text and speech sets, folders, shards and their file formats."""

from ssl_data.datasets.asterisk import AsteriskSounds, asterisk_root
from ssl_data.datasets.audio_folder import AudioFiles, AudioFolder
from ssl_data.datasets.fashion_mnist import (
    CLASSES as FASHION_MNIST_CLASSES,
)
from ssl_data.datasets.fashion_mnist import (
    bundled_sample_root,
    fashion_mnist_root,
    load_fashion_mnist,
)
from ssl_data.datasets.fortunes import load_fortunes
from ssl_data.datasets.idx import read_idx
from ssl_data.datasets.image_decode import IMAGE_EXTENSIONS, decode_image, probe_image
from ssl_data.datasets.image_folder import ImageFolder
from ssl_data.datasets.librivox import LibriVoxUtterances, read_transcription
from ssl_data.datasets.rotten_tomatoes import load_rotten_tomatoes
from ssl_data.datasets.shard_index import ShardIndex, open_index
from ssl_data.datasets.shard_writer import (
    array_samples,
    image_folder_samples,
    text_line_samples,
    write_image_folder_shards,
    write_shards,
)
from ssl_data.datasets.shards import ShardStream, collate_samples
from ssl_data.datasets.spoken_digits import SpokenDigits, render_spoken_digits
from ssl_data.datasets.text_files import LabelledTexts, TextFileDataset, read_text_file
from ssl_data.datasets.wordnet import SUPERSENSES as WORDNET_SUPERSENSES
from ssl_data.datasets.wordnet import load_wordnet_glosses

__all__ = [
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "WORDNET_SUPERSENSES",
    "AsteriskSounds",
    "AudioFiles",
    "AudioFolder",
    "ImageFolder",
    "LabelledTexts",
    "LibriVoxUtterances",
    "ShardIndex",
    "ShardStream",
    "SpokenDigits",
    "TextFileDataset",
    "array_samples",
    "asterisk_root",
    "bundled_sample_root",
    "collate_samples",
    "decode_image",
    "fashion_mnist_root",
    "image_folder_samples",
    "load_fashion_mnist",
    "load_fortunes",
    "load_rotten_tomatoes",
    "load_wordnet_glosses",
    "open_index",
    "probe_image",
    "read_idx",
    "read_text_file",
    "read_transcription",
    "render_spoken_digits",
    "text_line_samples",
    "write_image_folder_shards",
    "write_shards",
]
