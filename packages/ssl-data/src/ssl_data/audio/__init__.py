"""Speech: decoding, resampling, waveform augmentation, log-mel features, masking and views.

Waveform operations are batched over ``(B, T)`` with per-sample real lengths and read their
random parameters from counter-based uniforms (:mod:`ssl_data.randomness`), like the image
transforms: a clip's output depends only on the clip and (seed, epoch, sample index, view).
"""

from ssl_data.audio.compose import (
    AudioCompose,
    AudioOp,
    as_waveform_tensor,
    pad_batch,
    prepare_waveforms,
)
from ssl_data.audio.crop import RandomCrop, crop_or_pad
from ssl_data.audio.decode import audio_info, decode_audio, mixdown
from ssl_data.audio.features import LogMelSpectrogram, hz_to_mel, mel_filterbank, mel_to_hz
from ssl_data.audio.gain import RandomGain, db_to_amplitude
from ssl_data.audio.noise import AdditiveNoise, snr_db, white_noise
from ssl_data.audio.resample import resample
from ssl_data.audio.span_mask import SpanMask, compute_span_mask, conv_output_lengths
from ssl_data.audio.spec_augment import SpecAugment
from ssl_data.audio.time_shift import RandomTimeShift, shift_waveforms
from ssl_data.audio.view_dataset import AudioViewDataset
from ssl_data.audio.views import (
    AudioViewPipeline,
    ContrastiveAudioView,
    LogMelSpecAugmentView,
    Wav2Vec2MaskView,
)

__all__ = [
    "AdditiveNoise",
    "AudioCompose",
    "AudioOp",
    "AudioViewDataset",
    "AudioViewPipeline",
    "ContrastiveAudioView",
    "LogMelSpecAugmentView",
    "LogMelSpectrogram",
    "RandomCrop",
    "RandomGain",
    "RandomTimeShift",
    "SpanMask",
    "SpecAugment",
    "Wav2Vec2MaskView",
    "as_waveform_tensor",
    "audio_info",
    "compute_span_mask",
    "conv_output_lengths",
    "crop_or_pad",
    "db_to_amplitude",
    "decode_audio",
    "hz_to_mel",
    "mel_filterbank",
    "mel_to_hz",
    "mixdown",
    "pad_batch",
    "prepare_waveforms",
    "resample",
    "shift_waveforms",
    "snr_db",
    "white_noise",
]
