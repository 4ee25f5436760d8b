"""The per-sample path for speech: views of each clip built inside DataLoader workers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

AudioViewGenerator = Callable[[Any, np.ndarray, int], Sequence[torch.Tensor]]


class AudioViewDataset(Dataset[list[torch.Tensor]]):
    """Item ``i`` is the views of clip ``i``, exactly row ``i`` of the batched path.

    The generator (e.g. :class:`ssl_data.audio.ContrastiveAudioView`) is called on the clip
    alone as a batch of one (``gen([clip], [i], epoch)``); since its random parameters are a
    function of (seed, epoch, sample index, view) and a clip's views do not depend on padding,
    :func:`ssl_data.views.collate_views` then gives the batched path's output.

    Args:
        clips: A dataset or list whose item ``i`` is a ``(T_i,)`` clip, or a tuple whose first
            element is one (e.g. :class:`ssl_data.datasets.AudioFolder`'s ``(clip, label)``).
        view_generator: ``gen(waveforms, indices, epoch)`` returning a list of tensors.
        epoch: Starting epoch (change it with :meth:`set_epoch` before each epoch's iterator).
        return_labels: Append the item's label (its second element) as a ``(1,) int64`` tensor.
    """

    def __init__(
        self,
        clips: Dataset[Any] | Sequence[Any],
        view_generator: AudioViewGenerator,
        epoch: int = 0,
        return_labels: bool = False,
    ):
        self.clips = clips
        self.view_generator = view_generator
        self.epoch = epoch
        self.return_labels = return_labels

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the views built from now on (workers see it at iterator creation)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        """The views of clip ``i``, each with a leading batch dimension of 1.

        Raises:
            IndexError: ``i`` out of range.
            ValueError: With ``return_labels``, an item that is not ``(clip, label)``.
        """
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} clips")
        i = i % n
        item = self.clips[i]
        clip = item[0] if isinstance(item, tuple) else item
        views = list(self.view_generator([clip], np.array([i]), self.epoch))
        if self.return_labels:
            if not isinstance(item, tuple) or len(item) < 2:
                raise ValueError(f"item {i} has no label: expected (clip, label), got {type(item)}")
            views.append(torch.tensor([int(item[1])], dtype=torch.int64))
        return views
