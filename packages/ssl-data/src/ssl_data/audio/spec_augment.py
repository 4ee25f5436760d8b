"""SpecAugment frequency and time masking on batched spectrograms."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.transforms.compose import check_probability, check_uniforms


def _draw(
    u_width: np.ndarray, u_start: np.ndarray, max_width: np.ndarray, size: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Width uniform in {0..min(max_width, size)}, start uniform in {0..size - width}."""
    width = np.floor(u_width * (np.minimum(max_width, size) + 1)).astype(np.int64)
    start = np.floor(u_start * (size - width + 1)).astype(np.int64)
    return start, width


@dataclass(frozen=True)
class SpecAugment:
    """Frequency and time masking of log-mel spectrograms (no time warping).

    Each of ``num_freq_masks`` masks covers ``f`` consecutive mel bins ``[f0, f0 + f)``, ``f``
    uniform in ``{0, ..., min(F, n_mels)}`` and ``f0`` uniform in ``{0, ..., n_mels - f}``; each of
    ``num_time_masks`` masks covers ``t`` consecutive frames, ``t`` uniform in
    ``{0, ..., min(T, floor(p * tau))}`` with ``tau`` the sample's real frame count, ``t0``
    uniform in ``{0, ..., tau - t}``, so masks never touch padding. Masks may overlap. Masked
    values become ``mask_value`` (Park et al. use the mean, which is 0 for normalised features),
    or each sample's mean over its real frames when ``mask_value="mean"``.

    Reads ``2 * (num_freq_masks + num_time_masks)`` uniforms per sample: (width, start) of each
    frequency mask, then of each time mask. Defaults are the LibriSpeech-double policy (LD):
    F = 27, two frequency masks, T = 100, p = 0.2, two time masks.

    Args:
        freq_mask_param: ``F``, the largest frequency-mask width in mel bins.
        num_freq_masks: ``m_F``.
        time_mask_param: ``T``, the largest time-mask width in frames.
        num_time_masks: ``m_T``.
        time_mask_ratio: ``p``, the largest time-mask width as a fraction of the real frames.
        mask_value: Value written into masked cells, or ``"mean"``.

    Raises:
        ValueError: Negative widths or counts, or ``time_mask_ratio`` outside [0, 1].

    Reference: Park et al., "SpecAugment: A Simple Data Augmentation Method for Automatic Speech
    Recognition", arXiv:1904.08779 (Section 2, Table 1).
    """

    freq_mask_param: int = 27
    num_freq_masks: int = 2
    time_mask_param: int = 100
    num_time_masks: int = 2
    time_mask_ratio: float = 0.2
    mask_value: float | str = 0.0

    def __post_init__(self) -> None:
        for name in ("freq_mask_param", "num_freq_masks", "time_mask_param", "num_time_masks"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        check_probability("time_mask_ratio", self.time_mask_ratio)
        if isinstance(self.mask_value, str) and self.mask_value != "mean":
            raise ValueError(f"mask_value must be a number or 'mean', got {self.mask_value!r}")

    @property
    def num_uniforms(self) -> int:
        """``2 * (num_freq_masks + num_time_masks)``."""
        return 2 * (self.num_freq_masks + self.num_time_masks)

    def masks(
        self, u: np.ndarray, n_mels: int, frame_lengths: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The masks that ``u`` selects.

        Args:
            u: ``(B, num_uniforms) float64`` uniforms.
            n_mels: Mel bins of the spectrograms.
            frame_lengths: ``(B,) int64`` real frames per sample.

        Returns:
            ``freq (B, num_freq_masks, 2)`` and ``time (B, num_time_masks, 2)`` int64 arrays of
            ``(start, width)``.
        """
        tau = np.asarray(frame_lengths, dtype=np.int64)
        check_uniforms(u, len(tau), self.num_uniforms, "SpecAugment")
        freq = np.zeros((len(tau), self.num_freq_masks, 2), dtype=np.int64)
        time = np.zeros((len(tau), self.num_time_masks, 2), dtype=np.int64)
        bins = np.full_like(tau, n_mels)
        for k in range(self.num_freq_masks):
            s, w = _draw(u[:, 2 * k], u[:, 2 * k + 1], np.full_like(tau, self.freq_mask_param),
                         bins)  # fmt: skip
            freq[:, k, 0], freq[:, k, 1] = s, w
        max_t = np.minimum(self.time_mask_param, np.floor(self.time_mask_ratio * tau)).astype(
            np.int64
        )
        base = 2 * self.num_freq_masks
        for k in range(self.num_time_masks):
            s, w = _draw(u[:, base + 2 * k], u[:, base + 2 * k + 1], max_t, tau)
            time[:, k, 0], time[:, k, 1] = s, w
        return freq, time

    def __call__(
        self,
        spectrograms: torch.Tensor,
        u: np.ndarray,
        frame_lengths: np.ndarray | None = None,
    ) -> torch.Tensor:
        """Mask ``(B, n_mels, N)`` spectrograms.

        Args:
            spectrograms: ``(B, n_mels, N)`` float (e.g. :class:`LogMelSpectrogram` output).
            u: ``(B, num_uniforms) float64`` uniforms in [0, 1).
            frame_lengths: ``(B,)`` real frames per sample; default ``N``.

        Returns:
            ``(B, n_mels, N)``, a new tensor.

        Raises:
            ValueError: ``spectrograms`` not 3-D, or ``u``/``frame_lengths`` of the wrong shape
                or range.
        """
        if spectrograms.ndim != 3:
            raise ValueError(
                f"spectrograms must be (B, n_mels, N), got {tuple(spectrograms.shape)}"
            )
        b, n_mels, n = spectrograms.shape
        tau = (
            np.full(b, n, dtype=np.int64)
            if frame_lengths is None
            else np.asarray(frame_lengths, dtype=np.int64).reshape(-1)
        )
        if tau.shape != (b,) or (tau.size and (tau.min() < 0 or tau.max() > n)):
            raise ValueError(f"frame_lengths must be ({b},) in [0, {n}], got {tau}")
        freq, time = self.masks(u, n_mels, tau)
        device = spectrograms.device
        bins = torch.arange(n_mels, device=device)[None, :, None]
        frames = torch.arange(n, device=device)[None, None, :]
        masked = torch.zeros(b, n_mels, n, dtype=torch.bool, device=device)
        for k in range(self.num_freq_masks):
            s = torch.as_tensor(freq[:, k, 0], device=device)[:, None, None]
            w = torch.as_tensor(freq[:, k, 1], device=device)[:, None, None]
            masked |= (bins >= s) & (bins < s + w)
        for k in range(self.num_time_masks):
            s = torch.as_tensor(time[:, k, 0], device=device)[:, None, None]
            w = torch.as_tensor(time[:, k, 1], device=device)[:, None, None]
            masked |= (frames >= s) & (frames < s + w)
        if self.mask_value == "mean":
            real = frames < torch.as_tensor(tau, device=device)[:, None, None]
            total = (spectrograms * real).sum((1, 2))
            count = (real.sum((1, 2)) * n_mels).clamp(min=1)
            fill = (total / count)[:, None, None].to(spectrograms.dtype)
            return torch.where(masked, fill, spectrograms)
        value = torch.tensor(float(self.mask_value), dtype=spectrograms.dtype, device=device)
        return torch.where(masked, value, spectrograms)
