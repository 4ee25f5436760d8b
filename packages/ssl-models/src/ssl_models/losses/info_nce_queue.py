"""InfoNCE against a queue of past keys: the objective of MoCo (v1 and v2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_models import distributed
from ssl_models.losses._precision import float32_region, upcast


class InfoNCEQueueLoss(nn.Module):
    """InfoNCE between queries and keys, with a first-in-first-out queue of K past keys as
    negatives.

    For a query ``q_i`` and its key ``k_i`` (both L2-normalised), the loss is
    ``-log(exp(q_i . k_i / t) / (exp(q_i . k_i / t) + sum_{j < K} exp(q_i . queue_j / t)))``,
    averaged over the batch. Keys get no gradient (they come from the momentum encoder). After the
    loss is computed the batch's keys replace the oldest K entries of the queue (``update_queue``);
    with ``gather_distributed=True`` the keys of all ranks are enqueued, in rank order, so every
    rank holds the same queue. Computed in float32 (float64 stays float64), autocast disabled.

    The queue starts as random unit vectors and is a buffer (``queue``, ``queue_ptr``), so it is
    saved with the method's state dict.

    Args:
        dim: Width D of queries and keys (the projection head's output).
        queue_size: K, the number of negatives (65536 in MoCo).
        temperature: Softmax temperature t (> 0; 0.2 in MoCo v2, 0.07 in MoCo v1).
        gather_distributed: Enqueue the keys of all ranks when ``torch.distributed`` is
            initialised (no effect otherwise).

    Shape:
        ``q``, ``k``: ``(B, D)`` float (any float dtype), B <= K (B times the world size when
        gathering). Output: scalar float32.

    Raises:
        ValueError: ``dim``, ``queue_size`` or ``temperature`` out of range; shapes differ or the
            width is not ``dim``; more keys in one batch than the queue holds.

    Reference: He et al., "Momentum Contrast for Unsupervised Visual Representation Learning",
    arXiv:1911.05722, eq. (1) and Algorithm 1; Chen et al., "Improved Baselines with Momentum
    Contrastive Learning", arXiv:2003.04297.
    """

    queue: torch.Tensor
    queue_ptr: torch.Tensor

    def __init__(
        self,
        dim: int,
        queue_size: int = 65536,
        temperature: float = 0.2,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        if dim < 1 or queue_size < 1:
            raise ValueError(f"dim and queue_size must be >= 1, got {dim} and {queue_size}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.dim = dim
        self.queue_size = queue_size
        self.temperature = temperature
        self.gather_distributed = gather_distributed
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def forward(self, q: torch.Tensor, k: torch.Tensor, update_queue: bool = True) -> torch.Tensor:
        """The loss of queries ``q`` against keys ``k`` and the queue, then (optionally) enqueue.

        Args:
            q: ``(B, D)`` queries (online encoder + projection head).
            k: ``(B, D)`` keys of the same images' other views (momentum encoder); detached.
            update_queue: Enqueue ``k`` after computing the loss.

        Returns:
            Scalar float32 loss.
        """
        if q.shape != k.shape or q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(
                f"q and k must both be (B, {self.dim}), got {tuple(q.shape)} and {tuple(k.shape)}"
            )
        with float32_region(q):
            q = F.normalize(upcast(q), dim=1)
            k = F.normalize(upcast(k.detach()), dim=1)
            positive = (q * k).sum(dim=1, keepdim=True)
            # clone: the queue is overwritten in place below, before backward runs
            negatives = q @ self.queue.clone().to(q.dtype).T
            logits = torch.cat([positive, negatives], dim=1) / self.temperature
            labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
            loss = F.cross_entropy(logits, labels)
        if update_queue:
            self.dequeue_and_enqueue(k)
        return loss

    @torch.no_grad()
    def dequeue_and_enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` (gathered from all ranks if ``gather_distributed``) over the oldest
        entries of the queue, wrapping around its end.

        Args:
            keys: ``(B, D)`` float keys (normalised here).

        Raises:
            ValueError: More keys than the queue holds.
        """
        keys = F.normalize(upcast(keys.detach()), dim=1)
        if self.gather_distributed:
            keys = distributed.gather(keys)
        n = keys.shape[0]
        if n > self.queue_size:
            raise ValueError(
                f"{n} keys per step exceed queue_size={self.queue_size}; use a larger queue"
            )
        ptr = int(self.queue_ptr.item())
        index = (ptr + torch.arange(n, device=keys.device)) % self.queue_size
        self.queue[index] = keys.to(self.queue.dtype)
        self.queue_ptr[0] = (ptr + n) % self.queue_size
