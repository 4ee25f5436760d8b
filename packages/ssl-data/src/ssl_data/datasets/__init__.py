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
from ssl_data.datasets.idx import read_idx
from ssl_data.datasets.librivox import LibriVoxUtterances, read_transcription
from ssl_data.datasets.spoken_digits import SpokenDigits, render_spoken_digits

__all__ = [
    "FASHION_MNIST_CLASSES",
    "AsteriskSounds",
    "AudioFiles",
    "AudioFolder",
    "LibriVoxUtterances",
    "SpokenDigits",
    "asterisk_root",
    "bundled_sample_root",
    "fashion_mnist_root",
    "load_fashion_mnist",
    "read_idx",
    "read_transcription",
    "render_spoken_digits",
]
