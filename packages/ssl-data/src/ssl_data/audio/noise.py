"""Additive noise at a signal-to-noise ratio in decibels: white Gaussian noise or given noise clips."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ssl_data.audio.compose import as_waveform_tensor, check_lengths, real_mask
from ssl_data.randomness import uniform
from ssl_data.transforms.compose import check_probability, check_uniforms

# Seed of the white-noise sample streams; the per-clip key (from the clip's own uniforms) is the
# "sample index" of that stream, so the noise is a pure function of (seed, epoch, index, stream).
_WHITE_NOISE_SEED = 0x5EED_A0D1_0000
_KEY_SCALE = float(1 << 53)


def white_noise(keys: np.ndarray, num_samples: int) -> torch.Tensor:
    """Standard Gaussian white noise, one reproducible row per key.

    Row ``b`` is ``ndtri`` (the inverse normal CDF) of ``num_samples`` counter-based uniforms
    keyed by ``keys[b]``; its first ``n`` values do not depend on ``num_samples``.

    Args:
        keys: ``(B,) int64`` non-negative keys.
        num_samples: Samples per row.

    Returns:
        ``(B, num_samples) float32``, mean 0, variance 1.
    """
    if num_samples == 0:
        return torch.zeros(len(keys), 0)
    u = uniform(_WHITE_NOISE_SEED, 0, keys, num_samples)
    u += 0.5 / _KEY_SCALE  # k / 2**53 -> (k + 0.5) / 2**53: strictly inside (0, 1)
    return torch.special.ndtri(torch.from_numpy(u)).float()


def snr_db(signal: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio ``10 log10(mean(signal**2) / mean(noise**2))`` in dB.

    Args:
        signal: ``(..., T)`` float.
        noise: ``(..., T)`` float, same shape.

    Returns:
        ``(...)`` float64 dB (``inf`` for zero noise, ``-inf`` for a silent signal).
    """
    ps = signal.double().pow(2).mean(-1)
    pn = noise.double().pow(2).mean(-1)
    return 10 * torch.log10(ps / pn)


@dataclass(frozen=True)
class AdditiveNoise:
    """Add noise scaled so that each clip's SNR is ``s`` dB, ``s`` uniform in ``snr_db``.

    The SNR is measured over the clip's real part: noise power ``P_n`` is scaled to
    ``P_s / 10 ** (s / 10)``, with ``P_s`` the clip's mean square; padding stays zero and a silent
    clip stays silent. Reads 4 uniforms per sample: the coin (applied when ``u0 < p``), the SNR,
    then, for white noise, the key of the clip's Gaussian sample stream (:func:`white_noise`);
    for given noise clips, which clip and the offset into it (clips shorter than the signal are
    repeated).

    Args:
        snr_db: ``(low, high)`` SNR range in dB.
        noise: ``None`` for white Gaussian noise, or noise clips ``(T_k,)`` (float or int16 PCM)
            at the waveforms' sample rate (e.g. decoded with
            :func:`ssl_data.audio.decode_audio`).
        p: Probability of adding noise.

    Raises:
        ValueError: An empty or non-finite SNR range, ``p`` outside [0, 1], or an empty or
            non-1-D noise clip.
    """

    snr_db: tuple[float, float] = (5.0, 40.0)
    noise: Sequence[torch.Tensor | np.ndarray] | None = None
    p: float = 1.0
    _clips: tuple[np.ndarray, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        low, high = self.snr_db
        if not (np.isfinite(low) and np.isfinite(high)) or low > high:
            raise ValueError(f"snr_db must be a finite (low, high) range in dB, got {self.snr_db}")
        check_probability("p", self.p)
        clips = []
        for k, clip in enumerate(self.noise or ()):
            c = as_waveform_tensor(clip).detach().cpu().numpy().astype(np.float32)
            if c.ndim != 1 or c.shape[0] == 0:
                raise ValueError(f"noise clip {k} must be non-empty (T,), got {c.shape}")
            clips.append(c)
        if self.noise is not None and not clips:
            raise ValueError("noise must hold at least one clip, or be None for white noise")
        object.__setattr__(self, "_clips", tuple(clips))

    @property
    def num_uniforms(self) -> int:
        """4: the coin, the SNR, the noise key or clip choice, the offset into the clip."""
        return 4

    def snrs_db(self, u: np.ndarray) -> np.ndarray:
        """``(B,) float64`` SNRs in dB that ``u`` selects."""
        check_uniforms(u, len(u), 4, "AdditiveNoise")
        return self.snr_db[0] + (self.snr_db[1] - self.snr_db[0]) * u[:, 1]

    def raw_noise(self, u: np.ndarray, num_samples: int) -> torch.Tensor:
        """The ``(B, num_samples) float32`` unscaled noise of each sample."""
        if not self._clips:
            return white_noise(np.floor(u[:, 2] * _KEY_SCALE).astype(np.int64), num_samples)
        out = np.empty((len(u), num_samples), dtype=np.float32)
        which = np.floor(u[:, 2] * len(self._clips)).astype(np.int64)
        for b, k in enumerate(which):
            clip = self._clips[k]
            start = int(u[b, 3] * len(clip))
            out[b] = clip[(start + np.arange(num_samples)) % len(clip)]
        return torch.from_numpy(out)

    def __call__(
        self, waveforms: torch.Tensor, u: np.ndarray, lengths: np.ndarray
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Add noise to ``(B, T) float32`` waveforms with ``(B,)`` real lengths.

        Returns:
            The noisy ``(B, T) float32`` waveforms and the unchanged lengths.

        Raises:
            ValueError: ``u`` or ``lengths`` of the wrong shape.
        """
        b, total = waveforms.shape
        check_uniforms(u, b, 4, "AdditiveNoise")
        lens = check_lengths(lengths, b, total)
        rows = np.flatnonzero(u[:, 0] < self.p)
        if rows.size == 0 or total == 0:
            return waveforms, lens
        x = waveforms[torch.from_numpy(rows).to(waveforms.device)].double()
        mask = real_mask(lens[rows], total, x.device)
        noise = self.raw_noise(u[rows], total).to(x.device).double() * mask
        count = torch.as_tensor(np.maximum(lens[rows], 1), device=x.device, dtype=torch.float64)
        p_signal = x.pow(2).sum(1) / count
        p_noise = noise.pow(2).sum(1) / count
        target = p_signal / torch.from_numpy(10.0 ** (self.snrs_db(u[rows]) / 10)).to(x.device)
        scale = torch.where(p_noise > 0, torch.sqrt(target / p_noise), torch.zeros_like(p_noise))
        out = waveforms.clone()
        out[torch.from_numpy(rows).to(out.device)] = (x + scale[:, None] * noise).to(out.dtype)
        return out, lens
