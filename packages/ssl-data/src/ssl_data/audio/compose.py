"""Batches of waveforms and the random operations on them: padding, real lengths, composition.

A batch of clips is a ``(B, T) float32`` tensor plus ``lengths``, the ``(B,) int64`` number of
real samples at the start of each row (the rest is zero padding). Every random waveform operation
here is a pure function of that batch and a ``(B, num_uniforms)`` array of uniform numbers from
:func:`ssl_data.randomness.uniform`, and it only reads and writes each row's real part: a clip
gives the same output alone (a batch of one, no padding) as inside any padded batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ssl_data.transforms.compose import check_uniforms

Waveforms = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]


@runtime_checkable
class AudioOp(Protocol):
    """A batched waveform operation whose random parameters are read from uniform numbers.

    ``__call__(waveforms, u, lengths)`` takes ``(B, T) float32`` waveforms, ``u`` of shape
    ``(B, num_uniforms) float64`` in [0, 1) and the ``(B,) int64`` real lengths in samples, and
    returns the new ``(B, T') float32`` waveforms and their ``(B,) int64`` real lengths.
    """

    @property
    def num_uniforms(self) -> int:
        """Columns of ``u`` the operation reads."""
        ...

    def __call__(
        self, waveforms: torch.Tensor, u: np.ndarray, lengths: np.ndarray
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Apply the operation with per-sample parameters taken from ``u``."""
        ...


def as_waveform_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A waveform array as a float32 tensor, integer PCM scaled to [-1, 1).

    Args:
        x: Any shape; float (kept as is, cast to float32), int16 (divided by 32768) or int32
            (divided by 2**31).

    Raises:
        ValueError: Another dtype (e.g. uint8, bool, complex).
    """
    t = torch.as_tensor(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if t.is_floating_point():
        return t.float()
    if t.dtype == torch.int16:
        return t.float() / 32768.0
    if t.dtype == torch.int32:
        return t.float() / 2147483648.0
    raise ValueError(f"waveforms must be float, int16 or int32 PCM, got dtype {t.dtype}")


def pad_batch(clips: Sequence[torch.Tensor | np.ndarray]) -> tuple[torch.Tensor, np.ndarray]:
    """Stack clips of different lengths into one zero-padded batch.

    Args:
        clips: ``B`` mono clips, each ``(T_i,)`` float or int16/int32 PCM.

    Returns:
        ``waveforms (B, max T_i) float32`` (zeros after each clip) and ``lengths (B,) int64``.

    Raises:
        ValueError: No clips, or a clip that is not 1-D.
    """
    if len(clips) == 0:
        raise ValueError("pad_batch needs at least one clip")
    tensors = [as_waveform_tensor(c) for c in clips]
    for i, t in enumerate(tensors):
        if t.ndim != 1:
            raise ValueError(f"clip {i} must be 1-D (T,) mono, got shape {tuple(t.shape)}")
    lengths = np.array([t.shape[0] for t in tensors], dtype=np.int64)
    out = torch.zeros(len(tensors), int(lengths.max()), device=tensors[0].device)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out, lengths


def prepare_waveforms(
    waveforms: Waveforms, lengths: Sequence[int] | np.ndarray | torch.Tensor | None = None
) -> tuple[torch.Tensor, np.ndarray]:
    """A batch as ``(B, T) float32`` and its real lengths, samples past each length zeroed.

    Args:
        waveforms: ``(B, T)`` tensor/array (float, or int16/int32 PCM), a ``(T,)`` single clip,
            or a sequence of ``(T_i,)`` clips of any lengths (padded with :func:`pad_batch`).
        lengths: ``(B,)`` real lengths in samples for a padded ``(B, T)`` batch; default ``T``
            for every row. Ignored (computed) for a sequence of clips.

    Returns:
        ``waveforms (B, T) float32`` and ``lengths (B,) int64`` in ``[0, T]``.

    Raises:
        ValueError: A batch that is not 1-D or 2-D, or lengths of the wrong shape or outside
            ``[0, T]``.
    """
    if not isinstance(waveforms, (torch.Tensor, np.ndarray)):
        return pad_batch(waveforms)  # already zero past each length
    x = as_waveform_tensor(waveforms)
    if x.ndim == 1:
        x = x.unsqueeze(0)
    if x.ndim != 2:
        raise ValueError(f"waveforms must be (B, T) or (T,), got shape {tuple(x.shape)}")
    lens = check_lengths(lengths, x.shape[0], x.shape[1])
    if (lens < x.shape[1]).any():
        x = x.masked_fill(~real_mask(lens, x.shape[1], x.device), 0.0)
    return x, lens


def check_lengths(
    lengths: Sequence[int] | np.ndarray | torch.Tensor | None, batch: int, total: int
) -> np.ndarray:
    """Real lengths as ``(batch,) int64`` in ``[0, total]`` (``total`` each when ``None``).

    Raises:
        ValueError: Wrong shape, or a length below 0 or above ``total``.
    """
    if lengths is None:
        return np.full(batch, total, dtype=np.int64)
    if isinstance(lengths, torch.Tensor):
        lengths = lengths.detach().cpu().numpy()
    lens = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if lens.shape != (batch,):
        raise ValueError(f"lengths must be ({batch},) (one per clip), got shape {lens.shape}")
    if lens.size and (lens.min() < 0 or lens.max() > total):
        bad = int(lens[(lens < 0) | (lens > total)][0])
        raise ValueError(f"lengths must be in [0, {total}] samples, got {bad}")
    return lens


def real_mask(lengths: np.ndarray, total: int, device: torch.device) -> torch.Tensor:
    """``(B, total) bool``: True on each row's first ``lengths[b]`` positions."""
    positions = torch.arange(total, device=device)[None, :]
    return positions < torch.as_tensor(lengths, device=device)[:, None]


def seconds_to_samples(seconds: float, sample_rate: int) -> int:
    """``round(seconds * sample_rate)`` samples.

    Raises:
        ValueError: A negative duration or a sample rate below 1 Hz.
    """
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be >= 1 Hz, got {sample_rate}")
    if seconds < 0:
        raise ValueError(f"duration must be >= 0 seconds, got {seconds}")
    return round(seconds * sample_rate)


@dataclass(frozen=True)
class AudioCompose:
    """Apply waveform operations in sequence, each reading its own block of uniform columns.

    Operation ``k`` reads the ``num_uniforms`` columns after those of operations ``0 .. k-1``,
    so appending an operation never changes the parameters of the ones before it.

    Args:
        ops: The operations, applied first to last.
    """

    ops: Sequence[AudioOp] = ()

    @property
    def num_uniforms(self) -> int:
        """Sum of the operations' ``num_uniforms``."""
        return sum(op.num_uniforms for op in self.ops)

    def __call__(
        self, waveforms: torch.Tensor, u: np.ndarray, lengths: np.ndarray
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Apply every operation to ``(B, T) float32`` waveforms with ``(B,)`` real lengths.

        Returns:
            ``(B, T') float32`` waveforms and their ``(B,) int64`` real lengths.

        Raises:
            ValueError: ``u`` has too few columns.
        """
        check_uniforms(u, waveforms.shape[0], self.num_uniforms, "AudioCompose")
        start = 0
        for op in self.ops:
            n = op.num_uniforms
            waveforms, lengths = op(waveforms, u[:, start : start + n], lengths)
            start += n
        return waveforms, lengths
