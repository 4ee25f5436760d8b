"""The per-sample execution path: views built inside DataLoader workers, one sample at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

ViewGenerator = Callable[[torch.Tensor, np.ndarray, int], Sequence[torch.Tensor]]


class ImageSource(Protocol):
    """Any indexable dataset of images: ``len(source)`` and ``source[i]``.

    ``source[i]`` is an image ``(H, W)`` or ``(C, H, W)`` (uint8 in [0, 255] or float in [0, 1],
    tensor or NumPy array; each item may have its own size), or a tuple/list whose first element
    is one (e.g. ``(image, label)`` from :class:`ssl_data.datasets.ImageFolder`).
    """

    def __len__(self) -> int: ...

    def __getitem__(self, i: int, /) -> Any: ...


def _single_image(item: Any, i: int) -> torch.Tensor:
    """A dataset item as a batch of one: ``(1, H, W)`` or ``(1, C, H, W)``."""
    image = item[0] if isinstance(item, tuple | list) else item
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor) or image.ndim not in (2, 3):
        shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
        raise ValueError(f"item {i} must hold an (H, W) or (C, H, W) image, got {shape}")
    return image.unsqueeze(0)


class ViewDataset(Dataset[list[torch.Tensor]]):
    """A dataset whose item ``i`` is the views of image ``i``, computed as the batched path does.

    The view generator is called on a batch of one (``images[i:i+1]``, index ``[i]``); since
    every random parameter is a function of (seed, epoch, sample index, view), the result equals
    row ``i`` of the batched path, whatever the worker, batch composition or order. Use
    :func:`collate_views` as the DataLoader's ``collate_fn`` to get exactly the batched output.

    The images can also come from any indexable dataset that decodes on access (an
    :class:`~ssl_data.datasets.ImageFolder`, a list of tensors): each item is read in the worker
    and its views built as a batch of one, so images of different sizes work (the views have
    the generator's fixed output size).

    Args:
        images: ``(N, H, W)`` or ``(N, C, H, W)`` uint8 in [0, 255] or float in [0, 1] (tensor
            or NumPy array), kept in memory and shared with fork-started workers; or an
            :class:`ImageSource` dataset.
        view_generator: Any generator of :mod:`ssl_data.views` (``gen(images, indices, epoch)``).
        epoch: Starting epoch (change it with :meth:`set_epoch` before each epoch's iterator is
            created).

    Raises:
        ValueError: An in-memory ``images`` array is not 3-D or 4-D.
        TypeError: ``images`` is neither an array nor an indexable dataset.
    """

    def __init__(
        self,
        images: torch.Tensor | np.ndarray | ImageSource,
        view_generator: ViewGenerator,
        epoch: int = 0,
    ):
        data: torch.Tensor | ImageSource
        if isinstance(images, np.ndarray):
            data = torch.as_tensor(np.ascontiguousarray(images))
        else:
            data = images
        if isinstance(data, torch.Tensor):
            if data.ndim not in (3, 4):
                raise ValueError(
                    f"images must be (N, H, W) or (N, C, H, W), got {tuple(data.shape)}"
                )
        elif not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
            raise TypeError(
                f"images must be a tensor, an array or an indexable dataset, got {type(data)}"
            )
        self.images = data
        self.view_generator = view_generator
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the views built from now on (workers see it at iterator creation)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        """The views of sample ``i`` as a batch of one.

        Returns:
            The generator's output for ``images[i:i+1]``: each tensor keeps its leading batch
            dimension (1, or 4 for rotation prediction's sample-major rows).

        Raises:
            IndexError: ``i`` out of range.
            ValueError: A dataset item is not an image.
        """
        n = len(self.images)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        i = i % n
        if isinstance(self.images, torch.Tensor):
            image = self.images[i : i + 1]
        else:
            image = _single_image(self.images[i], i)
        views = self.view_generator(image, np.array([i]), self.epoch)
        return list(views)


def collate_views(samples: Sequence[Sequence[torch.Tensor]]) -> list[Any]:
    """Concatenate per-sample views (from :class:`ViewDataset`) along the batch dimension.

    Args:
        samples: ``B`` items, each a list of V tensors with a leading dimension per sample.

    Returns:
        V tensors, each the concatenation of the samples' tensors along dimension 0: the same
        tensors the batched path returns for those indices in that order.
    """
    return [torch.cat([s[v] for s in samples], dim=0) for v in range(len(samples[0]))]
