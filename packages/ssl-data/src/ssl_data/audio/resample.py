"""Sample-rate conversion with soxr (the SoX resampler library, band-limited, linear phase)."""

from __future__ import annotations

from typing import overload

import numpy as np
import soxr  # type: ignore[import-untyped]
import torch

QUALITIES = ("VHQ", "HQ", "MQ", "LQ", "QQ")


@overload
def resample(
    audio: np.ndarray, orig_rate: int, target_rate: int, quality: str = "HQ"
) -> np.ndarray: ...
@overload
def resample(
    audio: torch.Tensor, orig_rate: int, target_rate: int, quality: str = "HQ"
) -> torch.Tensor: ...
def resample(
    audio: np.ndarray | torch.Tensor, orig_rate: int, target_rate: int, quality: str = "HQ"
) -> np.ndarray | torch.Tensor:
    """Resample a clip from ``orig_rate`` to ``target_rate`` with soxr.

    The output has ``T * target_rate / orig_rate`` samples rounded to an integer (soxr's count
    for a whole clip); content above the lower Nyquist frequency is filtered out (anti-aliasing),
    the rest keeps its frequency and phase.

    Args:
        audio: ``(T,)`` mono or ``(C, T)`` channels-first float samples (array or tensor; a tensor
            is converted on the CPU and returned on its device).
        orig_rate: Rate of ``audio`` in Hz.
        target_rate: Wanted rate in Hz.
        quality: soxr recipe: ``"VHQ"``, ``"HQ"`` (default), ``"MQ"``, ``"LQ"`` or ``"QQ"``.

    Returns:
        ``(T',)`` or ``(C, T')`` float32, of the input's type (array or tensor).

    Raises:
        ValueError: A rate below 1 Hz, an unknown ``quality``, or ``audio`` not 1-D/2-D.
    """
    for name, rate in (("orig_rate", orig_rate), ("target_rate", target_rate)):
        if rate < 1:
            raise ValueError(f"{name} must be >= 1 Hz, got {rate}")
    if quality not in QUALITIES:
        raise ValueError(f"quality must be one of {QUALITIES}, got {quality!r}")
    if audio.ndim not in (1, 2):
        raise ValueError(f"audio must be (T,) or (C, T), got shape {tuple(audio.shape)}")
    if isinstance(audio, torch.Tensor):
        x = audio.detach().cpu().float().numpy()
    else:
        x = np.asarray(audio, np.float32)
    if orig_rate == target_rate:
        y = x.copy()
    elif x.shape[-1] == 0:
        y = np.zeros(x.shape, dtype=np.float32)
    else:
        # soxr wants frames first: (T,) or (T, C).
        y = soxr.resample(np.ascontiguousarray(x.T), orig_rate, target_rate, quality=quality)
        y = np.ascontiguousarray(np.asarray(y, dtype=np.float32).T)
    if isinstance(audio, torch.Tensor):
        return torch.from_numpy(y).to(audio.device)
    return y
