"""The global random-number generators of a process, captured and restored without pickle.

Augmentations and the epoch order are functions of (seed, epoch, sample index) and need no saved
state; methods that draw from torch's global generator (MAE's patch masks, jigsaw permutations,
dropout) do. A checkpoint therefore records Python's ``random``, numpy's legacy global generator,
torch's CPU generator and every CUDA device's generator: JSON for the first two, uint8 tensors
(safetensors) for torch's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ssl_train.errors import CheckpointError

TORCH_CPU_KEY = "torch.cpu"
CUDA_KEY_PREFIX = "torch.cuda."


@dataclass
class RngState:
    """The state of every global generator of this process.

    Attributes:
        python: ``random.getstate()`` as JSON lists (version, 625 ints, gauss_next).
        numpy: ``np.random.get_state(legacy=False)`` with the MT19937 key as a list of ints.
        torch_cpu: ``torch.get_rng_state()``, ``(5056,) uint8``.
        cuda: One ``torch.cuda.get_rng_state(i)`` per visible device (``uint8``), index order.
    """

    python: list[Any]
    numpy: dict[str, Any]
    torch_cpu: torch.Tensor
    cuda: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def capture(cls) -> RngState:
        """The current state of the process's global generators."""
        version, internal, gauss = random.getstate()
        np_state = np.random.get_state(legacy=False)
        np_json = {
            "bit_generator": np_state["bit_generator"],
            "state": {
                "key": [int(v) for v in np_state["state"]["key"]],
                "pos": int(np_state["state"]["pos"]),
            },
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        }
        cuda = (
            [s.clone() for s in torch.cuda.get_rng_state_all()]
            if torch.cuda.is_available() and torch.cuda.is_initialized()
            else []
        )
        return cls([version, list(internal), gauss], np_json, torch.get_rng_state().clone(), cuda)

    def restore(self) -> None:
        """Make this state the process's current one.

        CUDA generators are restored for ``min(saved, visible)`` devices, so a checkpoint from
        a CPU run (no CUDA state) or from another device count still loads.
        """
        version, internal, gauss = self.python
        random.setstate((int(version), tuple(int(v) for v in internal), gauss))
        np_state = dict(self.numpy)
        np_state["state"] = {
            "key": np.asarray(self.numpy["state"]["key"], dtype=np.uint32),
            "pos": int(self.numpy["state"]["pos"]),
        }
        np.random.set_state(np_state)
        torch.set_rng_state(self.torch_cpu)
        if self.cuda and torch.cuda.is_available():
            for i, s in enumerate(self.cuda[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(s, i)

    def to_json(self) -> dict[str, Any]:
        """The JSON part (Python and numpy generators)."""
        return {"python": self.python, "numpy": self.numpy, "cuda_devices": len(self.cuda)}

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensor part, for a safetensors file: ``torch.cpu`` and ``torch.cuda.<i>``."""
        out = {TORCH_CPU_KEY: self.torch_cpu.contiguous()}
        out.update({f"{CUDA_KEY_PREFIX}{i}": s.contiguous() for i, s in enumerate(self.cuda)})
        return out

    @classmethod
    def from_parts(
        cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor], source: str
    ) -> RngState:
        """Rebuild from :meth:`to_json` and :meth:`tensors` output.

        Raises:
            CheckpointError: A part is missing or malformed (``source`` names the file).
        """
        try:
            cuda = [tensors[f"{CUDA_KEY_PREFIX}{i}"] for i in range(int(meta["cuda_devices"]))]
            state = cls(list(meta["python"]), dict(meta["numpy"]), tensors[TORCH_CPU_KEY], cuda)
            if len(state.python) != 3 or len(state.python[1]) != 625:
                raise ValueError(f"python state has {len(state.python)} parts, expected 3")
            if len(state.numpy["state"]["key"]) != 624:
                raise ValueError("numpy MT19937 key must hold 624 integers")
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise CheckpointError(f"{source}: malformed RNG state ({err!r})") from None
        if state.torch_cpu.dtype != torch.uint8 or state.torch_cpu.ndim != 1:
            raise CheckpointError(
                f"{source}: {TORCH_CPU_KEY} must be a 1-D uint8 tensor, got "
                f"{state.torch_cpu.dtype} {tuple(state.torch_cpu.shape)}"
            )
        return state
