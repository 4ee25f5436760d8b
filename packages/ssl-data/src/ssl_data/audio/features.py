"""Log-mel spectrogram: ``torch.stft`` power spectrum, a triangular mel filterbank, a log.

Two mel scales are offered. ``"htk"`` (the default; HTK, Kaldi, torchaudio's default):
``mel = 2595 log10(1 + f / 700)``. ``"slaney"`` (Slaney's Auditory Toolbox; librosa's default,
used by Whisper): linear below 1 kHz (``mel = 3 f / 200``), logarithmic above
(``mel = 15 + 27 ln(f / 1000) / ln 6.4``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, get_args

import numpy as np
import torch

from ssl_data.audio.compose import prepare_waveforms

MelScale = Literal["htk", "slaney"]
MelNorm = Literal["slaney"] | None

_SLANEY_F_SP = 200.0 / 3  # Hz per mel below the break
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP  # 15 mel
_SLANEY_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float, scale: MelScale = "htk") -> np.ndarray:
    """Frequencies in Hz to mel on the ``"htk"`` or ``"slaney"`` scale (module docstring).

    Raises:
        ValueError: An unknown scale.
    """
    f = np.asarray(hz, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    if scale == "slaney":
        log_part = _SLANEY_MIN_LOG_MEL + np.log(np.maximum(f, 1e-10) / _SLANEY_MIN_LOG_HZ) / (
            _SLANEY_LOGSTEP
        )
        return np.where(f >= _SLANEY_MIN_LOG_HZ, log_part, f / _SLANEY_F_SP)
    raise ValueError(f"mel scale must be one of {get_args(MelScale)}, got {scale!r}")


def mel_to_hz(mel: np.ndarray | float, scale: MelScale = "htk") -> np.ndarray:
    """Mel on the ``"htk"`` or ``"slaney"`` scale back to Hz (inverse of :func:`hz_to_mel`).

    Raises:
        ValueError: An unknown scale.
    """
    m = np.asarray(mel, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (np.power(10.0, m / 2595.0) - 1.0)
    if scale == "slaney":
        log_part = _SLANEY_MIN_LOG_HZ * np.exp(_SLANEY_LOGSTEP * (m - _SLANEY_MIN_LOG_MEL))
        return np.where(m >= _SLANEY_MIN_LOG_MEL, log_part, m * _SLANEY_F_SP)
    raise ValueError(f"mel scale must be one of {get_args(MelScale)}, got {scale!r}")


@lru_cache(maxsize=32)
def _filterbank(
    n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int, scale: str, norm: str
) -> np.ndarray:
    all_freqs = np.linspace(0.0, sample_rate / 2, n_freqs)
    m_pts = np.linspace(hz_to_mel(f_min, scale), hz_to_mel(f_max, scale), n_mels + 2)  # type: ignore[arg-type]
    f_pts = mel_to_hz(m_pts, scale)  # type: ignore[arg-type]
    f_diff = np.diff(f_pts)  # (n_mels + 1,)
    slopes = f_pts[None, :] - all_freqs[:, None]  # (n_freqs, n_mels + 2)
    down = -slopes[:, :-2] / f_diff[:-1]  # rising edge of each triangle
    up = slopes[:, 2:] / f_diff[1:]  # falling edge
    fb = np.maximum(0.0, np.minimum(down, up))
    if norm == "slaney":  # equal area: each triangle's integral over Hz is 1 (x 2 / width)
        fb *= 2.0 / (f_pts[2 : n_mels + 2] - f_pts[:n_mels])
    return fb.astype(np.float32)


def mel_filterbank(
    n_freqs: int,
    n_mels: int,
    sample_rate: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    mel_scale: MelScale = "htk",
    norm: MelNorm = None,
) -> torch.Tensor:
    """Triangular mel filters over the bins of a one-sided spectrum.

    Filter ``m`` rises linearly from centre ``m - 1`` to centre ``m`` and falls to centre
    ``m + 1``; the ``n_mels + 2`` edge frequencies are equally spaced in mel between ``f_min``
    and ``f_max``. Bin ``k`` of the spectrum is at ``k * sample_rate / n_fft`` Hz, with
    ``n_freqs = n_fft // 2 + 1``. Same construction as torchaudio's ``melscale_fbanks``.

    Args:
        n_freqs: Number of spectrum bins (``n_fft // 2 + 1``).
        n_mels: Number of mel filters.
        sample_rate: Rate in Hz.
        f_min: Lowest edge in Hz.
        f_max: Highest edge in Hz; default ``sample_rate / 2``.
        mel_scale: ``"htk"`` or ``"slaney"`` (module docstring).
        norm: ``None`` (peak 1 per filter) or ``"slaney"`` (area 1 per filter).

    Returns:
        ``(n_freqs, n_mels) float32``.

    Raises:
        ValueError: Counts below 1, or not ``0 <= f_min < f_max <= sample_rate / 2``.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if n_freqs < 1 or n_mels < 1 or sample_rate < 1:
        raise ValueError(
            f"n_freqs, n_mels and sample_rate must be >= 1, got {n_freqs}, {n_mels}, {sample_rate}"
        )
    if not 0.0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(
            f"need 0 <= f_min < f_max <= sample_rate / 2 = {sample_rate / 2} Hz, got "
            f"f_min={f_min}, f_max={f_max}"
        )
    if mel_scale not in get_args(MelScale):
        raise ValueError(f"mel_scale must be one of {get_args(MelScale)}, got {mel_scale!r}")
    if norm not in (None, "slaney"):
        raise ValueError(f"norm must be None or 'slaney', got {norm!r}")
    fb = _filterbank(n_freqs, float(f_min), float(f_max), n_mels, sample_rate, mel_scale,
                     str(norm))  # fmt: skip
    return torch.from_numpy(fb.copy())


@dataclass(frozen=True)
class LogMelSpectrogram:
    """Log-mel features of waveforms: ``log(mel_filters @ |STFT|**2 + log_offset)``.

    The STFT uses a periodic Hann window of ``win_length`` samples zero-padded to ``n_fft``,
    frames every ``hop`` samples, and ``center=True`` with zero padding of ``n_fft // 2`` on
    both sides (as librosa >= 0.10), so any clip, even one shorter than a window, gives
    ``1 + T // hop`` frames. The defaults are the usual 25 ms windows every 10 ms with 80 mel
    bands at 16 kHz.

    Args:
        sample_rate: Rate of the waveforms in Hz.
        n_fft: FFT size in samples.
        win_length: Window length in samples (<= ``n_fft``); default ``n_fft``.
        hop_length: Hop in samples. Give this or ``hop_ms``; default 10 ms.
        hop_ms: Hop in milliseconds (rounded to whole samples).
        n_mels: Number of mel bands.
        f_min: Lowest filter edge in Hz.
        f_max: Highest filter edge in Hz; default ``sample_rate / 2``.
        mel_scale: ``"htk"`` (default) or ``"slaney"``.
        norm: Filter normalisation, ``None`` or ``"slaney"``.
        log_offset: Added before the log (keeps silence finite).

    Raises:
        ValueError: Non-positive sizes, ``win_length > n_fft``, both hops given, or bad
            frequency limits.

    Reference: Davis & Mermelstein (1980) for mel filterbank features; the HTK Book for the
    ``"htk"`` scale; Slaney (1998), Auditory Toolbox, for ``"slaney"``.
    """

    sample_rate: int = 16000
    n_fft: int = 400
    win_length: int | None = None
    hop_length: int | None = None
    hop_ms: float | None = None
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None
    mel_scale: MelScale = "htk"
    norm: MelNorm = None
    log_offset: float = 1e-6

    def __post_init__(self) -> None:
        if self.n_fft < 1 or self.win_samples < 1 or self.win_samples > self.n_fft:
            raise ValueError(
                f"need n_fft >= 1 and 1 <= win_length <= n_fft, got n_fft={self.n_fft}, "
                f"win_length={self.win_length}"
            )
        if self.hop_length is not None and self.hop_ms is not None:
            raise ValueError(
                f"give hop_length (samples) or hop_ms, not both: {self.hop_length}, {self.hop_ms}"
            )
        if self.hop < 1:
            raise ValueError(f"the hop must be >= 1 sample, got {self.hop}")
        if self.log_offset <= 0:
            raise ValueError(f"log_offset must be > 0, got {self.log_offset}")
        self.filterbank()  # validates the mel parameters

    @property
    def win_samples(self) -> int:
        """Window length in samples."""
        return self.n_fft if self.win_length is None else self.win_length

    @property
    def hop(self) -> int:
        """Hop in samples."""
        if self.hop_length is not None:
            return self.hop_length
        ms = 10.0 if self.hop_ms is None else self.hop_ms
        return round(ms * self.sample_rate / 1000)

    @property
    def n_freqs(self) -> int:
        """``n_fft // 2 + 1`` spectrum bins."""
        return self.n_fft // 2 + 1

    def filterbank(self) -> torch.Tensor:
        """The ``(n_freqs, n_mels) float32`` mel filters (:func:`mel_filterbank`)."""
        return mel_filterbank(self.n_freqs, self.n_mels, self.sample_rate, self.f_min,
                              self.f_max, self.mel_scale, self.norm)  # fmt: skip

    def mel_centers(self) -> np.ndarray:
        """``(n_mels,) float64`` centre frequency of each mel filter in Hz."""
        f_max = self.sample_rate / 2 if self.f_max is None else self.f_max
        lo, hi = hz_to_mel(self.f_min, self.mel_scale), hz_to_mel(f_max, self.mel_scale)
        return mel_to_hz(np.linspace(lo, hi, self.n_mels + 2)[1:-1], self.mel_scale)

    def num_frames(self, num_samples: int | np.ndarray) -> np.ndarray:
        """Frames of a clip of ``num_samples`` samples: ``1 + num_samples // hop`` (int64)."""
        return 1 + np.asarray(num_samples, dtype=np.int64) // self.hop

    def __call__(
        self,
        waveforms: torch.Tensor | np.ndarray,
        lengths: np.ndarray | None = None,
    ) -> torch.Tensor:
        """Log-mel spectrogram of a batch.

        Args:
            waveforms: ``(B, T)`` or ``(T,)`` float (or int16 PCM) at ``sample_rate``.
            lengths: ``(B,)`` real lengths in samples; padding is zeroed first. The real frames
                of row ``b`` are the first ``num_frames(lengths[b])``.

        Returns:
            ``(B, n_mels, 1 + T // hop) float32`` natural-log mel power.

        Raises:
            ValueError: Bad shapes.
        """
        x, _ = prepare_waveforms(waveforms, lengths)
        window = torch.hann_window(self.win_samples, periodic=True, device=x.device)
        if x.shape[1] == 0:
            x = torch.zeros(x.shape[0], 1, device=x.device)  # one all-zero frame, like T=0
        spec = torch.stft(x, self.n_fft, hop_length=self.hop, win_length=self.win_samples,
                          window=window, center=True, pad_mode="constant",
                          return_complex=True)  # fmt: skip
        power = spec.real.pow(2) + spec.imag.pow(2)  # (B, n_freqs, frames)
        mel = torch.einsum("bfn,fm->bmn", power, self.filterbank().to(x.device))
        return torch.log(mel + self.log_offset)
