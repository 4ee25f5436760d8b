"""Decoding audio files (WAV, FLAC, OGG/Vorbis and the other formats libsndfile reads).

Decoding is libsndfile's, through ``soundfile``; resampling is soxr's (:mod:`.resample`). Samples
come back as float32 in [-1, 1]: integer PCM is scaled by libsndfile (16-bit ``x / 32768``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO, overload

import numpy as np
import soundfile as sf  # type: ignore[import-untyped]
import torch

from ssl_data.audio.resample import resample
from ssl_data.errors import CorruptFileError

AudioSource = str | Path | bytes | bytearray | memoryview | BinaryIO


def _describe(source: AudioSource) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes of audio>"
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<file object {getattr(source, 'name', type(source).__name__)}>"


def _open(source: AudioSource) -> str | BinaryIO:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"audio file {path} does not exist")
        return str(path)
    return source


@overload
def mixdown(audio: np.ndarray) -> np.ndarray: ...
@overload
def mixdown(audio: torch.Tensor) -> torch.Tensor: ...
def mixdown(audio: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Mix a multi-channel clip down to mono: the mean over channels.

    Args:
        audio: ``(C, T)`` channels-first samples (array or tensor, float), or ``(T,)`` already
            mono (returned unchanged).

    Returns:
        ``(T,)`` of the input's type and float dtype.

    Raises:
        ValueError: ``audio`` is neither 1-D nor 2-D, or has no channel.
    """
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2 or audio.shape[0] == 0:
        raise ValueError(f"audio must be (C, T) with C >= 1 or (T,), got {tuple(audio.shape)}")
    return audio.mean(0) if isinstance(audio, torch.Tensor) else audio.mean(axis=0)


def audio_info(source: str | Path) -> tuple[int, int, int]:
    """Read a file's header only: ``(sample rate in Hz, frames, channels)``.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        CorruptFileError: The header cannot be parsed (the message names the file).
    """
    opened = _open(source)
    try:
        info = sf.info(opened)
    except (sf.SoundFileError, RuntimeError, ValueError, EOFError) as e:
        raise CorruptFileError(f"cannot decode {_describe(source)}: {e}") from e
    if info.samplerate < 1 or info.channels < 1:
        raise CorruptFileError(
            f"cannot decode {_describe(source)}: header says {info.samplerate} Hz, "
            f"{info.channels} channels"
        )
    return int(info.samplerate), int(info.frames), int(info.channels)


def decode_audio(
    source: AudioSource,
    *,
    sample_rate: int | None = None,
    mono: bool = True,
    quality: str = "HQ",
) -> tuple[np.ndarray, int]:
    """Decode a clip to float32, mixed down to mono and resampled on request.

    Args:
        source: A path, the encoded bytes, or a binary file object (WAV, FLAC, OGG/Vorbis, or
            any other format libsndfile reads).
        sample_rate: Target rate in Hz (resampled with soxr); ``None`` keeps the file's rate.
        mono: Mix the channels down to one (their mean, :func:`mixdown`).
        quality: soxr quality recipe (``"VHQ"``, ``"HQ"``, ``"MQ"``, ``"LQ"``, ``"QQ"``).

    Returns:
        ``(samples, rate)``: ``(T,) float32`` when ``mono``, else ``(C, T) float32`` channels
        first, in [-1, 1]; and the rate of those samples in Hz.

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        CorruptFileError: The data cannot be decoded (names the file, or the byte count).
        ValueError: ``sample_rate`` below 1 Hz.
    """
    if sample_rate is not None and sample_rate < 1:
        raise ValueError(f"sample_rate must be >= 1 Hz, got {sample_rate}")
    opened = _open(source)
    try:
        data, rate = sf.read(opened, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError, EOFError) as e:
        raise CorruptFileError(f"cannot decode {_describe(source)}: {e}") from e
    if rate < 1 or data.shape[1] < 1:
        raise CorruptFileError(
            f"cannot decode {_describe(source)}: {rate} Hz, {data.shape[1]} channels"
        )
    audio = np.ascontiguousarray(data.T)  # (C, T)
    if mono:
        audio = mixdown(audio).astype(np.float32, copy=False)
    if sample_rate is not None and sample_rate != rate:
        audio = resample(audio, rate, sample_rate, quality=quality)
        rate = sample_rate
    return audio, int(rate)
