"""Exact gradient accumulation for token-level language-model losses.

A per-token mean computed on each micro-batch and averaged over micro-batches weights a token of
a short micro-batch more than one of a long micro-batch, so accumulating variable-length
micro-batches does not give the gradient of the whole batch. The exact recipe: sum the per-token
losses of every micro-batch and divide by the total number of predicted tokens of the whole
step (``loss_i = loss_sum_i / N_total``; ``sum_i loss_i = loss_sum / N_total``). Under DDP,
``N_total`` is the global count and each rank's loss is multiplied by the world size, undoing
DDP's gradient averaging.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ssl_models import distributed
from ssl_models.text.base import TextBatch, TokenLevelLM


def total_loss_tokens(
    method: TokenLevelLM,
    micro_batches: Sequence[TextBatch],
    device: torch.device | str = "cpu",
) -> int:
    """Predicted tokens over all micro-batches (and all ranks under ``torch.distributed``).

    Args:
        method: A token-level LM (:class:`~ssl_models.text.MaskedLM`,
            :class:`~ssl_models.text.CausalLM`, :class:`~ssl_models.text.BidirectionalLM`).
        micro_batches: The micro-batches of one optimiser step.
        device: Where the count is all-reduced (the process group's device: CUDA under NCCL).

    Returns:
        The count (an all-reduce sum across ranks when distributed).
    """
    count = sum(method.num_loss_tokens(b) for b in micro_batches)
    if distributed.world_size() > 1:
        import torch.distributed as dist

        t = torch.tensor(count, dtype=torch.int64, device=device)
        dist.all_reduce(t)
        count = int(t)
    return count


def accumulate_gradients(
    method: torch.nn.Module, micro_batches: Sequence[TextBatch]
) -> torch.Tensor:
    """Backpropagate one optimiser step's micro-batches so the summed gradient equals the
    gradient of the per-token mean loss over all of them.

    Each micro-batch's loss is ``loss_sum / N_total`` (times the world size under DDP, whose
    gradient average divides by it again). Gradients add to ``.grad``; call the optimiser after.

    Args:
        method: A :class:`~ssl_models.text.TokenLevelLM`, or a DDP wrapper of one.
        micro_batches: Batch dicts of any lengths.

    Returns:
        Scalar float32 (detached): ``sum of this rank's per-token losses / N_total``; on one
        process the per-token mean loss of the whole step, under DDP this rank's share (the
        shares of all ranks add up to the global mean).

    Raises:
        TypeError: ``method`` is not a token-level LM.
    """
    inner = getattr(method, "module", method)
    if not isinstance(inner, TokenLevelLM):
        raise TypeError(f"accumulate_gradients needs a TokenLevelLM, got {type(inner).__name__}")
    total = total_loss_tokens(inner, micro_batches)
    scale = float(distributed.world_size())
    step_loss = torch.zeros(())
    for batch in micro_batches:
        loss = method(batch, num_items_in_batch=total)
        (loss * scale).backward()
        step_loss = step_loss + loss.detach().cpu().float()
    return step_loss
