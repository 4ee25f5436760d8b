"""Random crop (or zero-pad) of waveforms to a fixed duration, batched as one gather."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch

from ssl_data.audio.compose import check_lengths, seconds_to_samples
from ssl_data.transforms.compose import check_uniforms

PadPosition = Literal["end", "random", "center"]


def crop_or_pad(
    waveforms: torch.Tensor, lengths: np.ndarray, offsets: np.ndarray, num_samples: int
) -> torch.Tensor:
    """Window ``num_samples`` samples of each clip, starting at its offset, zeros outside it.

    Output sample ``j`` of row ``b`` is ``waveforms[b, j + offsets[b]]`` when that index lies in
    the clip's real part ``[0, lengths[b])``, else 0. A negative offset therefore places the
    whole clip ``-offsets[b]`` samples into the window (padding before and after it).

    Args:
        waveforms: ``(B, T) float32``.
        lengths: ``(B,) int64`` real lengths in samples.
        offsets: ``(B,) int64`` window starts in samples (may be negative or past the clip).
        num_samples: Window length in samples (>= 0).

    Returns:
        ``(B, num_samples) float32`` on the input's device.

    Raises:
        ValueError: Shapes disagree or ``num_samples`` is negative.
    """
    b, total = waveforms.shape
    lens = check_lengths(lengths, b, total)
    offs = np.asarray(offsets, dtype=np.int64).reshape(-1)
    if offs.shape != (b,) or num_samples < 0:
        raise ValueError(
            f"offsets must be ({b},) and num_samples >= 0, got {offs.shape}, {num_samples}"
        )
    device = waveforms.device
    if total == 0 or num_samples == 0:
        return torch.zeros(b, num_samples, device=device, dtype=waveforms.dtype)
    src = (
        torch.arange(num_samples, device=device)[None, :]
        + torch.as_tensor(offs, device=device)[:, None]
    )
    valid = (src >= 0) & (src < torch.as_tensor(lens, device=device)[:, None])
    picked = torch.gather(waveforms, 1, src.clamp(0, total - 1))
    return torch.where(valid, picked, torch.zeros((), dtype=picked.dtype, device=device))


@dataclass(frozen=True)
class RandomCrop:
    """Random crop to ``seconds``; clips shorter than that are zero-padded, never an error.

    Reads 1 uniform per sample, ``u``. A clip of ``L >= N`` samples (``N = round(seconds *
    sample_rate)``) starts at ``floor(u * (L - N + 1))``: every start from 0 to ``L - N`` equally
    likely, so the crops spread over the whole clip. A shorter clip is placed in the window by
    ``pad``: ``"end"`` at the start (zeros after it; its real length stays ``L``), ``"random"`` at
    ``floor(u * (N - L + 1))``, ``"center"`` at ``(N - L) // 2`` (for those two the zeros become
    part of the clip: the returned length is ``N``).

    Args:
        seconds: Output duration in seconds.
        sample_rate: Rate of the waveforms in Hz.
        pad: Where a short clip goes in the window: ``"end"``, ``"random"`` or ``"center"``.

    Raises:
        ValueError: ``seconds`` giving no sample, a rate below 1 Hz or an unknown ``pad``.

    Reference: the random-segment sampling of COLA (Saeed et al., arXiv:2010.10915) and
    wav2vec 2.0 (Baevski et al., arXiv:2006.11477, crops of at most 250k samples).
    """

    seconds: float
    sample_rate: int
    pad: PadPosition = "end"

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(
                f"seconds={self.seconds} at {self.sample_rate} Hz gives no sample; use a "
                f"duration of at least {1 / max(self.sample_rate, 1)} s"
            )
        if self.pad not in get_args(PadPosition):
            raise ValueError(f"pad must be one of {get_args(PadPosition)}, got {self.pad!r}")

    @property
    def num_samples(self) -> int:
        """Output length ``N`` in samples."""
        return seconds_to_samples(self.seconds, self.sample_rate)

    @property
    def num_uniforms(self) -> int:
        """1: the start offset (or, with ``pad="random"``, the position of a short clip)."""
        return 1

    def offsets(self, u: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Window starts in samples: ``(B,) int64``, negative for a short clip placed later.

        Args:
            u: ``(B, >= 1) float64`` uniforms in [0, 1).
            lengths: ``(B,) int64`` real lengths in samples.
        """
        lens = np.asarray(lengths, dtype=np.int64)
        check_uniforms(u, len(lens), 1, "RandomCrop")
        n = self.num_samples
        long_start = np.floor(u[:, 0] * (np.maximum(lens - n, 0) + 1)).astype(np.int64)
        if self.pad == "end":
            short = np.zeros_like(lens)
        elif self.pad == "center":
            short = (n - lens) // 2
        else:
            short = np.floor(u[:, 0] * (np.maximum(n - lens, 0) + 1)).astype(np.int64)
        return np.where(lens >= n, long_start, -short)

    def __call__(
        self, waveforms: torch.Tensor, u: np.ndarray, lengths: np.ndarray
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Crop or pad ``(B, T) float32`` waveforms with ``(B,)`` real lengths.

        Returns:
            ``(B, N) float32`` and the ``(B,) int64`` real lengths in the window (``min(L, N)``
            with ``pad="end"``, ``N`` otherwise).

        Raises:
            ValueError: ``u`` or ``lengths`` of the wrong shape.
        """
        lens = check_lengths(lengths, waveforms.shape[0], waveforms.shape[1])
        n = self.num_samples
        out = crop_or_pad(waveforms, lens, self.offsets(u, lens), n)
        new_lengths = np.minimum(lens, n) if self.pad == "end" else np.full_like(lens, n)
        return out, new_lengths
