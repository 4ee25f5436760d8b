"""Audio preprocessing on the server: decode, mix down, resample, validate and pad (no torch).

Follows a bundle's :class:`~ssl_serve.bundle.AudioPreprocessing`. Encoded WAV or FLAC bytes are
decoded by libsndfile (``soundfile``) to float32 in [-1, 1] (16-bit PCM is ``x / 32768``) and
mixed down to mono (the mean of the channels); raw samples come as little-endian float32 with
their rate. Every clip is resampled to the bundle's rate with soxr (the SoX resampler,
band-limited, linear phase; its "HQ" recipe, as ssl-data's training pipeline uses) and checked:
not empty, finite, a rate > 0, at most ``max_seconds`` long and at least ``min_samples`` (one
frame of the encoder) long. A batch is zero-padded on the right to its longest clip with an
``attention_mask`` of 1 on real samples; the graph normalises, encodes and pools each clip over
its real samples and frames only, so padding does not change an embedding.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

import numpy as np
import soundfile as sf  # type: ignore[import-untyped]
import soxr  # type: ignore[import-untyped]

from ssl_serve.bundle import AUDIO_INPUT_NAMES, AudioPreprocessing, Bundle
from ssl_serve.errors import InvalidInputError
from ssl_serve.preprocess.text import length_sorted_batches

if TYPE_CHECKING:
    from ssl_serve.v1.embedding_pb2 import Input

# libsndfile's names of the containers the API accepts (WAVEX: WAV with the extensible header,
# as multichannel and float WAV writers often use).
AUDIO_FORMATS = ("WAV", "WAVEX", "FLAC")
# Highest input rate accepted, in Hz (the highest rate audio hardware records at).
MAX_SAMPLE_RATE = 768_000
# Default bound on one session.run of an audio model, in seconds of padded audio (clips x
# longest): wav2vec 2.0 base's first convolution holds 512 float32 channels at 1/5 of the input
# rate, about 400 MB for 60 s at 16 kHz.
DEFAULT_MAX_BATCH_SECONDS = 60.0
# soxr recipe of each bundle resampler name.
_SOXR_QUALITY = {"soxr_hq": "HQ"}


def decode_audio(
    data: bytes, *, max_seconds: float | None = None, index: int | None = None
) -> tuple[np.ndarray, int]:
    """Decode one encoded audio file to mono float32 samples at the file's rate.

    The header is read first, so a clip longer than ``max_seconds`` is refused before its
    samples are decoded.

    Args:
        data: The file's bytes: WAV (PCM 8/16/24/32-bit or float) or FLAC, any channel count.
        max_seconds: Longest clip accepted, in seconds; None accepts any length.
        index: Position of the input in its request, named in errors.

    Returns:
        ``(samples (T,) float32 in [-1, 1], rate in Hz)``; channels are averaged to mono.

    Raises:
        InvalidInputError: The bytes are empty or not a WAV/FLAC file libsndfile decodes, the
            clip has no samples, is longer than ``max_seconds``, or holds NaN/inf samples.
    """
    if len(data) == 0:
        raise InvalidInputError(
            "audio is empty (0 bytes); send WAV or FLAC file bytes", index=index
        )
    try:
        info = sf.info(io.BytesIO(data))
    except Exception as e:  # libsndfile reports bad data as several exception types
        raise InvalidInputError(
            f"cannot decode audio ({len(data)} bytes): {_reason(e)}; send the bytes of a WAV "
            "or FLAC file, or raw_audio (float32 samples and their rate)",
            index=index,
        ) from None
    if info.format not in AUDIO_FORMATS:
        raise InvalidInputError(
            f"audio format {info.format} ({info.format_info}) is not accepted; send WAV or FLAC",
            index=index,
        )
    if info.samplerate <= 0 or info.channels <= 0:
        raise InvalidInputError(
            f"audio header says {info.samplerate} Hz and {info.channels} channels; a "
            "decodable file has a rate > 0 and at least one channel",
            index=index,
        )
    if max_seconds is not None and info.frames > max_seconds * info.samplerate:
        _too_long(info.frames / info.samplerate, max_seconds, index)
    try:
        frames, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:
        raise InvalidInputError(
            f"cannot decode audio ({len(data)} bytes, {info.format}): {_reason(e)}",
            index=index,
        ) from None
    samples = frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0]
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    _check_samples(samples, float(rate), max_seconds, index)
    return samples, int(rate)


def raw_audio_samples(
    samples: bytes,
    sample_rate_hz: float,
    *,
    max_seconds: float | None = None,
    index: int | None = None,
) -> np.ndarray:
    """Decode raw mono samples (the proto's ``RawAudio``) and check them with their rate.

    Args:
        samples: Little-endian float32 samples in [-1, 1], ``4 * T`` bytes.
        sample_rate_hz: Their rate in Hz, > 0 and <= :data:`MAX_SAMPLE_RATE`.
        max_seconds: Longest clip accepted, in seconds; None accepts any length.
        index: Position of the input in its request, named in errors.

    Returns:
        ``(T,) float32`` samples (native byte order, a writable copy).

    Raises:
        InvalidInputError: A rate that is not finite, <= 0 or above 768 kHz; a byte count that
            is not a multiple of 4; no samples; NaN/inf samples; longer than ``max_seconds``.
    """
    _check_rate(sample_rate_hz, index)
    if len(samples) % 4:
        raise InvalidInputError(
            f"raw_audio samples are {len(samples)} bytes, not a multiple of 4; send "
            "little-endian float32 samples",
            index=index,
        )
    array = np.frombuffer(samples, dtype="<f4").astype(np.float32)
    _check_samples(array, sample_rate_hz, max_seconds, index)
    return array


def resample_audio(
    samples: np.ndarray,
    orig_rate: float,
    target_rate: int,
    *,
    resampler: str = "soxr_hq",
    index: int | None = None,
) -> np.ndarray:
    """Resample a mono clip with soxr (whole clip at once, so both ends are handled).

    Args:
        samples: ``(T,) float32``.
        orig_rate: Rate of ``samples`` in Hz (> 0; need not be an integer).
        target_rate: Wanted rate in Hz.
        resampler: A bundle resampler name: "soxr_hq".
        index: Position of the input in its request, named in errors.

    Returns:
        ``(round(T * target_rate / orig_rate),) float32``; ``samples`` itself when the rates
        are equal.

    Raises:
        InvalidInputError: soxr refuses the rates.
        ValueError: An unknown ``resampler``.
    """
    if resampler not in _SOXR_QUALITY:
        raise ValueError(f"resampler must be one of {list(_SOXR_QUALITY)}, got {resampler!r}")
    if orig_rate == target_rate:
        return samples
    try:
        out = soxr.resample(samples, orig_rate, target_rate, quality=_SOXR_QUALITY[resampler])
    except Exception as e:  # soxr raises plain errors for rates it cannot handle
        raise InvalidInputError(
            f"cannot resample from {orig_rate:g} Hz to {target_rate} Hz: {e}", index=index
        ) from None
    return np.ascontiguousarray(out, dtype=np.float32)


def preprocess_audio(
    data: bytes, prep: AudioPreprocessing, *, index: int | None = None
) -> np.ndarray:
    """One encoded audio input as the model's waveform: decode, mix down, resample, check.

    Args:
        data: WAV or FLAC bytes.
        prep: The bundle's audio preprocessing.
        index: Position of the input in its request, named in errors.

    Returns:
        ``(T,) float32`` at ``prep.sample_rate``, ``prep.min_samples <= T <= max samples``.

    Raises:
        InvalidInputError: See :func:`decode_audio`; or the clip is shorter than one frame.
    """
    samples, rate = decode_audio(data, max_seconds=prep.max_seconds, index=index)
    return _to_model_rate(samples, rate, prep, index)


def preprocess_raw_audio(
    samples: bytes, sample_rate_hz: float, prep: AudioPreprocessing, *, index: int | None = None
) -> np.ndarray:
    """One raw audio input (float32 samples + rate) as the model's waveform.

    Args:
        samples: Little-endian float32 mono samples.
        sample_rate_hz: Their rate in Hz.
        prep: The bundle's audio preprocessing.
        index: Position of the input in its request, named in errors.

    Returns:
        ``(T,) float32`` at ``prep.sample_rate``.

    Raises:
        InvalidInputError: See :func:`raw_audio_samples`; or the clip is shorter than one
            frame after resampling.
    """
    array = raw_audio_samples(samples, sample_rate_hz, max_seconds=prep.max_seconds, index=index)
    return _to_model_rate(array, sample_rate_hz, prep, index)


def preprocess_audio_tensor(
    dtype: str,
    shape: Sequence[int],
    data: bytes,
    prep: AudioPreprocessing,
    *,
    index: int | None = None,
) -> np.ndarray:
    """A tensor input to an audio model: one mono float32 waveform already at the model's rate.

    Args:
        dtype: Must be "float32".
        shape: ``(T,)`` with ``prep.min_samples <= T <= prep.max_samples``.
        data: Little-endian contents, ``4 * T`` bytes.
        prep: The bundle's audio preprocessing.
        index: Position of the input in its request, named in errors.

    Returns:
        ``(T,) float32``.

    Raises:
        InvalidInputError: Another dtype or rank, a byte count that does not match, NaN/inf,
            or a length outside the bundle's limits.
    """
    if dtype != "float32" or len(shape) != 1:
        raise InvalidInputError(
            f"tensor is {dtype} {list(shape)}; an audio model takes one float32 [samples] "
            f"waveform at {prep.sample_rate} Hz",
            index=index,
        )
    if len(data) != 4 * shape[0]:
        raise InvalidInputError(
            f"tensor data is {len(data)} bytes; shape {list(shape)} float32 needs {4 * shape[0]}",
            index=index,
        )
    array = raw_audio_samples(data, prep.sample_rate, max_seconds=prep.max_seconds, index=index)
    return _to_model_rate(array, prep.sample_rate, prep, index)


def preprocess_audio_inputs(inputs: Sequence[Input], prep: AudioPreprocessing) -> list[np.ndarray]:
    """Every input of a request to an audio model as a waveform at the model's rate.

    Args:
        inputs: The request's ``ssl_serve.v1.Input`` messages, each with ``audio`` (WAV/FLAC
            bytes), ``raw_audio`` (float32 samples + rate) or ``tensor`` (float32 ``[T]`` at
            the bundle's rate) set.
        prep: The bundle's audio preprocessing.

    Returns:
        One ``(T_i,) float32`` clip per input, in input order.

    Raises:
        InvalidInputError: An input of another kind, or a bad clip (the message starts
            ``input <index>:``).
    """
    clips = []
    for i, item in enumerate(inputs):
        kind = item.WhichOneof("kind")
        if kind == "audio":
            clips.append(preprocess_audio(item.audio, prep, index=i))
        elif kind == "raw_audio":
            raw = item.raw_audio
            clips.append(preprocess_raw_audio(raw.samples, raw.sample_rate_hz, prep, index=i))
        elif kind == "tensor":
            t = item.tensor
            clips.append(preprocess_audio_tensor(t.dtype, list(t.shape), t.data, prep, index=i))
        else:
            raise InvalidInputError(
                f"an audio model takes audio, raw_audio or tensor inputs, got {kind}", index=i
            )
    return clips


def pad_audio(clips: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Right-pad clips with zeros to the longest one: the audio graph's feed dict.

    Args:
        clips: B >= 1 arrays ``(T_i,) float32`` at the model's rate.

    Returns:
        ``{"input_values": (B, max T_i) float32, "attention_mask": (B, max T_i) int64}``, the
        mask 1 on real samples and 0 on padding.

    Raises:
        InvalidInputError: ``clips`` is empty.
    """
    if len(clips) == 0:
        raise InvalidInputError("no audio clips to embed (N = 0)")
    longest = max(len(c) for c in clips)
    values = np.zeros((len(clips), longest), dtype=np.float32)
    mask = np.zeros((len(clips), longest), dtype=np.int64)
    for i, c in enumerate(clips):
        values[i, : len(c)] = c
        mask[i, : len(c)] = 1
    return {AUDIO_INPUT_NAMES[0]: values, AUDIO_INPUT_NAMES[1]: mask}


def audio_feeds(inputs: Sequence[Input], bundle: Bundle) -> dict[str, np.ndarray]:
    """A request's audio inputs as one padded onnxruntime feed dict for ``bundle``'s graph.

    Args:
        inputs: The request's ``ssl_serve.v1.Input`` messages (audio, raw_audio or tensor).
        bundle: An audio bundle.

    Returns:
        ``{"input_values": (N, T) float32, "attention_mask": (N, T) int64}``, T the longest
        clip in samples at the bundle's rate.

    Raises:
        InvalidInputError: No inputs, or a bad input (see :func:`preprocess_audio_inputs`).
        ValueError: ``bundle`` is not an audio bundle.
    """
    return pad_audio(preprocess_audio_inputs(inputs, audio_preprocessing(bundle)))


def audio_batches(
    clips: Sequence[np.ndarray],
    *,
    max_batch_size: int,
    max_batch_samples: int,
    max_padding: float = 0.25,
) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Length-sorted padded sub-batches of clips, so a short clip does not pay for a long one.

    The same grouping as text (:func:`~ssl_serve.preprocess.text.length_sorted_batches`, with
    samples for tokens): runs of at most ``max_batch_size`` clips and ``max_batch_samples``
    padded samples, padding within ``max_padding`` of a run. Embeddings do not depend on the
    grouping (the graph pools over real frames).

    Args:
        clips: N >= 1 arrays ``(T_i,) float32`` at the model's rate.
        max_batch_size: Most clips per sub-batch.
        max_batch_samples: Most padded samples (clips x longest) per sub-batch; a single clip
            always forms a sub-batch.
        max_padding: Largest fraction of a sub-batch that may be padding.

    Returns:
        ``(indices into clips (int64), feed dict)`` per sub-batch; the indices cover every
        clip once.
    """
    lengths = [len(c) for c in clips]
    groups = length_sorted_batches(
        lengths,
        max_batch_size=max_batch_size,
        max_batch_tokens=max_batch_samples,
        max_padding=max_padding,
        padding_slack=1,
    )
    return [(idx, pad_audio([clips[i] for i in idx])) for idx in groups]


def clips_from_padded(
    input_values: np.ndarray, attention_mask: np.ndarray, prep: AudioPreprocessing
) -> list[np.ndarray]:
    """Check an already padded audio batch (KServe v2 raw tensors) and cut it into clips.

    Args:
        input_values: ``(B, T) float32`` waveforms at ``prep.sample_rate``, zero-padded.
        attention_mask: ``(B, T)`` integers, 1 on each clip's real samples (a prefix of its
            row), 0 on padding.
        prep: The bundle's audio preprocessing (length limits).

    Returns:
        B arrays ``(T_i,) float32``: each row's real samples.

    Raises:
        InvalidInputError: The shapes differ or are not 2-D; a mask value other than 0/1; a
            row whose real samples are not a prefix; a clip shorter than ``prep.min_samples``
            or longer than ``prep.max_samples``; NaN/inf among the real samples (the message
            names the row as ``input <row>:``).
    """
    if input_values.ndim != 2 or input_values.shape != attention_mask.shape:
        raise InvalidInputError(
            f"input_values {list(input_values.shape)} and attention_mask "
            f"{list(attention_mask.shape)} must both be [batch, samples]"
        )
    if not np.isin(attention_mask, (0, 1)).all():
        raise InvalidInputError("attention_mask must hold only 0 (padding) and 1 (real samples)")
    lengths = attention_mask.sum(axis=1)
    prefix = np.arange(attention_mask.shape[1])[None, :] < lengths[:, None]
    clips = []
    for i, (row, n) in enumerate(zip(input_values, lengths, strict=True)):
        if not (attention_mask[i] == prefix[i]).all():
            raise InvalidInputError(
                "attention_mask must be 1 on a prefix of the row (the real samples) and 0 "
                "after it (right padding)",
                index=i,
            )
        clip = np.ascontiguousarray(row[: int(n)], dtype=np.float32)
        _check_samples(clip, prep.sample_rate, prep.max_seconds, i)
        _to_model_rate(clip, prep.sample_rate, prep, i)
        clips.append(clip)
    return clips


def warm_up_feeds(prep: AudioPreprocessing) -> dict[str, np.ndarray]:
    """Two silent clips of different lengths (one padded): a load-time check of the graph."""
    n = max(prep.min_samples, prep.sample_rate // 2)
    return pad_audio([np.zeros(n, np.float32), np.zeros(prep.min_samples, np.float32)])


def audio_preprocessing(bundle: Bundle) -> AudioPreprocessing:
    """``bundle.preprocessing`` of an audio bundle.

    Raises:
        ValueError: ``bundle`` is not an audio bundle.
    """
    prep = bundle.preprocessing
    if not isinstance(prep, AudioPreprocessing):
        raise ValueError(f"bundle {bundle.name!r} is a {bundle.modality} bundle, not audio")
    return prep


def _to_model_rate(
    samples: np.ndarray, rate: float, prep: AudioPreprocessing, index: int | None
) -> np.ndarray:
    out = resample_audio(samples, rate, prep.sample_rate, resampler=prep.resampler, index=index)
    if len(out) < prep.min_samples:
        raise InvalidInputError(
            f"audio is {1000 * len(samples) / rate:.1f} ms long ({len(out)} samples at "
            f"{prep.sample_rate} Hz); the model needs at least {prep.min_samples} samples "
            f"({1000 * prep.min_samples / prep.sample_rate:.1f} ms, one frame): send a longer "
            "clip",
            index=index,
        )
    return out


def _check_rate(rate: float, index: int | None) -> None:
    if not math.isfinite(rate) or not 0 < rate <= MAX_SAMPLE_RATE:
        raise InvalidInputError(
            f"sample rate is {rate:g} Hz; give the samples' rate in Hz, > 0 and <= "
            f"{MAX_SAMPLE_RATE} (e.g. 16000)",
            index=index,
        )


def _check_samples(
    samples: np.ndarray, rate: float, max_seconds: float | None, index: int | None
) -> None:
    if len(samples) == 0:
        raise InvalidInputError("audio has no samples (0 s); send a non-empty clip", index=index)
    if max_seconds is not None and len(samples) > max_seconds * rate:
        _too_long(len(samples) / rate, max_seconds, index)
    finite = np.isfinite(samples)
    if not finite.all():
        first = int(np.flatnonzero(~finite)[0])
        raise InvalidInputError(
            f"audio holds {int((~finite).sum())} NaN or infinite samples (the first at sample "
            f"{first}); send finite samples in [-1, 1]",
            index=index,
        )


def _too_long(seconds: float, max_seconds: float, index: int | None) -> NoReturn:
    raise InvalidInputError(
        f"audio is {seconds:.2f} s long; this model takes clips of at most {max_seconds:g} s: "
        "split it into shorter clips",
        index=index,
    )


def _reason(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    # soundfile prefixes "Error opening <_io.BytesIO object at 0x...>: "; the address is noise.
    return text.split(">: ", 1)[-1].rstrip(".")
