"""Random time shift of each clip: a circular roll or a shift with zero fill."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch

from ssl_data.audio.compose import check_lengths, seconds_to_samples
from ssl_data.transforms.compose import check_probability, check_uniforms

ShiftMode = Literal["roll", "zero"]


def shift_waveforms(
    waveforms: torch.Tensor, lengths: np.ndarray, shifts: np.ndarray, mode: ShiftMode = "roll"
) -> torch.Tensor:
    """Delay each clip by ``shifts[b]`` samples inside its real part ``[0, lengths[b])``.

    With ``"roll"`` output ``t`` is input ``(t - s) mod L``; with ``"zero"`` it is input
    ``t - s`` where that lies in ``[0, L)`` and 0 elsewhere. Padding stays zero. A negative
    shift moves the clip earlier.

    Args:
        waveforms: ``(B, T) float32``.
        lengths: ``(B,) int64`` real lengths in samples.
        shifts: ``(B,) int64`` shifts in samples.
        mode: ``"roll"`` or ``"zero"``.

    Returns:
        ``(B, T) float32``.

    Raises:
        ValueError: Shapes disagree or an unknown ``mode``.
    """
    if mode not in get_args(ShiftMode):
        raise ValueError(f"mode must be one of {get_args(ShiftMode)}, got {mode!r}")
    b, total = waveforms.shape
    lens_np = check_lengths(lengths, b, total)
    s_np = np.asarray(shifts, dtype=np.int64).reshape(-1)
    if s_np.shape != (b,):
        raise ValueError(f"shifts must be ({b},), got {s_np.shape}")
    if total == 0:
        return waveforms
    device = waveforms.device
    t = torch.arange(total, device=device)[None, :]
    lens = torch.as_tensor(lens_np, device=device)[:, None]
    src = t - torch.as_tensor(s_np, device=device)[:, None]
    inside = t < lens
    if mode == "roll":
        src = torch.remainder(src, lens.clamp(min=1))
        valid = inside
    else:
        valid = inside & (src >= 0) & (src < lens)
    picked = torch.gather(waveforms, 1, src.clamp(0, total - 1))
    return torch.where(valid, picked, torch.zeros((), dtype=picked.dtype, device=device))


@dataclass(frozen=True)
class RandomTimeShift:
    """Shift each clip by ``s`` samples, ``s`` uniform in ``[-S, S]``, ``S = max_seconds * rate``.

    Reads 2 uniforms per sample: the coin (applied when ``u0 < p``), then the shift
    ``floor(u1 * (2S + 1)) - S``. The shift acts inside each clip's real part (see
    :func:`shift_waveforms`), so the real lengths do not change.

    Args:
        max_seconds: Largest shift in seconds (either direction).
        sample_rate: Rate of the waveforms in Hz.
        mode: ``"roll"`` (circular) or ``"zero"`` (the vacated samples become 0).
        p: Probability of shifting.

    Raises:
        ValueError: A negative ``max_seconds``, a rate below 1 Hz, an unknown ``mode`` or ``p``
            outside [0, 1].
    """

    max_seconds: float = 0.1
    sample_rate: int = 16000
    mode: ShiftMode = "roll"
    p: float = 1.0

    def __post_init__(self) -> None:
        seconds_to_samples(self.max_seconds, self.sample_rate)
        if self.mode not in get_args(ShiftMode):
            raise ValueError(f"mode must be one of {get_args(ShiftMode)}, got {self.mode!r}")
        check_probability("p", self.p)

    @property
    def max_shift(self) -> int:
        """``S``, the largest shift in samples."""
        return seconds_to_samples(self.max_seconds, self.sample_rate)

    @property
    def num_uniforms(self) -> int:
        """2: the coin, the shift."""
        return 2

    def shifts(self, u: np.ndarray) -> np.ndarray:
        """``(B,) int64`` shifts in samples that ``u`` selects (0 where the coin says no)."""
        check_uniforms(u, len(u), 2, "RandomTimeShift")
        s = np.floor(u[:, 1] * (2 * self.max_shift + 1)).astype(np.int64) - self.max_shift
        return np.where(u[:, 0] < self.p, s, 0)

    def __call__(
        self, waveforms: torch.Tensor, u: np.ndarray, lengths: np.ndarray
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Shift ``(B, T) float32`` waveforms; returns them and the unchanged lengths.

        Raises:
            ValueError: ``u`` or ``lengths`` of the wrong shape.
        """
        check_uniforms(u, waveforms.shape[0], 2, "RandomTimeShift")
        return shift_waveforms(waveforms, lengths, self.shifts(u), self.mode), lengths
