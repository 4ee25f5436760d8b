"""ssl-data: datasets, decoding, augmentation and view generators for self-supervised learning."""

from ssl_data.audio import (
    AudioViewDataset,
    ContrastiveAudioView,
    LogMelSpecAugmentView,
    LogMelSpectrogram,
    SpecAugment,
    Wav2Vec2MaskView,
    compute_span_mask,
    decode_audio,
    resample,
)
from ssl_data.datasets import (
    FASHION_MNIST_CLASSES,
    AsteriskSounds,
    AudioFolder,
    ImageFolder,
    LibriVoxUtterances,
    ShardStream,
    SpokenDigits,
    load_fashion_mnist,
    read_idx,
    write_shards,
)
from ssl_data.errors import CorruptFileError, DatasetNotFoundError, SslDataError
from ssl_data.policies import RandAugment, TrivialAugment
from ssl_data.randomness import uniform
from ssl_data.transforms import as_float_images, normalize
from ssl_data.views import (
    BarlowTwinsView,
    BYOLView,
    JigsawView,
    MaskedPatchView,
    MoCoV2View,
    MultiCropView,
    RotationView,
    SimCLRView,
    VICRegView,
    ViewDataset,
    collate_views,
    jigsaw_permutations,
)

__version__ = "0.1.0"

__all__ = [
    "FASHION_MNIST_CLASSES",
    "AsteriskSounds",
    "AudioFolder",
    "AudioViewDataset",
    "BYOLView",
    "BarlowTwinsView",
    "ContrastiveAudioView",
    "CorruptFileError",
    "DatasetNotFoundError",
    "ImageFolder",
    "JigsawView",
    "LibriVoxUtterances",
    "LogMelSpecAugmentView",
    "LogMelSpectrogram",
    "MaskedPatchView",
    "MoCoV2View",
    "MultiCropView",
    "RandAugment",
    "RotationView",
    "ShardStream",
    "SimCLRView",
    "SpecAugment",
    "SpokenDigits",
    "SslDataError",
    "TrivialAugment",
    "VICRegView",
    "ViewDataset",
    "Wav2Vec2MaskView",
    "as_float_images",
    "collate_views",
    "compute_span_mask",
    "decode_audio",
    "jigsaw_permutations",
    "load_fashion_mnist",
    "normalize",
    "read_idx",
    "resample",
    "uniform",
    "write_shards",
]
