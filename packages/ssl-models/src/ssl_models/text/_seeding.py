"""Seeded torch generators keyed by coordinates, for sampling inside an objective."""

from __future__ import annotations

import torch

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def keyed_generator(device: torch.device, *coords: int) -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded by a SplitMix64 hash of ``coords``.

    The draws are a pure function of the coordinates (e.g. seed, rank, call counter), never of a
    generator state carried between calls, so a resumed run (whose counter is restored from the
    state dict) draws the same numbers.
    """
    h = 0
    for c in coords:
        h = _splitmix64(h ^ (c & _MASK64))
    gen = torch.Generator(device=device)
    gen.manual_seed(h & ((1 << 63) - 1))
    return gen
