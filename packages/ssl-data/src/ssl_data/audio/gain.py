"""Random gain: scale each clip by a loudness change drawn in decibels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.transforms.compose import check_probability, check_uniforms


def db_to_amplitude(db: np.ndarray | float) -> np.ndarray:
    """Amplitude factor of a gain in dB: ``10 ** (db / 20)``."""
    return np.power(10.0, np.asarray(db, dtype=np.float64) / 20.0)


@dataclass(frozen=True)
class RandomGain:
    """Multiply each clip by ``10 ** (g / 20)``, ``g`` uniform in ``[min_db, max_db]`` dB.

    Reads 2 uniforms per sample: the coin (applied when ``u0 < p``), then the gain. Samples are
    not clipped, so a positive gain can take float samples past 1 (clip them, if needed, at
    the end of the view). Padding stays zero.

    Args:
        min_db: Lowest gain in dB.
        max_db: Highest gain in dB.
        p: Probability of applying the gain.

    Raises:
        ValueError: ``min_db > max_db``, a non-finite bound or ``p`` outside [0, 1].
    """

    min_db: float = -6.0
    max_db: float = 6.0
    p: float = 1.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.min_db) and np.isfinite(self.max_db)):
            raise ValueError(f"gain range must be finite dB, got ({self.min_db}, {self.max_db})")
        if self.min_db > self.max_db:
            raise ValueError(f"min_db must be <= max_db, got ({self.min_db}, {self.max_db})")
        check_probability("p", self.p)

    @property
    def num_uniforms(self) -> int:
        """2: the coin, the gain."""
        return 2

    def gains_db(self, u: np.ndarray) -> np.ndarray:
        """``(B,) float64`` gains in dB that ``u`` selects (0 dB where the coin says no)."""
        check_uniforms(u, len(u), 2, "RandomGain")
        g = self.min_db + (self.max_db - self.min_db) * u[:, 1]
        return np.where(u[:, 0] < self.p, g, 0.0)

    def __call__(
        self, waveforms: torch.Tensor, u: np.ndarray, lengths: np.ndarray
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Scale ``(B, T) float32`` waveforms; returns them and the unchanged ``(B,)`` lengths.

        Raises:
            ValueError: ``u`` of the wrong shape.
        """
        check_uniforms(u, waveforms.shape[0], 2, "RandomGain")
        factor = torch.as_tensor(db_to_amplitude(self.gains_db(u)), dtype=waveforms.dtype)
        return waveforms * factor.to(waveforms.device)[:, None], lengths
