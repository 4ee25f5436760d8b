"""The wav2vec 2.0 contrastive loss: identify the true quantised latent among distractors."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl_models.losses._precision import float32_region, upcast


def wav2vec2_contrastive_loss(
    context: torch.Tensor,
    quantized: torch.Tensor,
    negative_indices: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """``L_m``, averaged over the anchors (masked frames that have distractors).

    For anchor frame t of utterance b with context vector c_t, true quantised latent q_t and
    distractors q_j, j in Q_t (frames of the same utterance),
    ``L_t = -log(exp(sim(c_t, q_t) / kappa) / sum_{q in {q_t} u Q_t} exp(sim(c_t, q) / kappa))``
    with cosine similarity ``sim``. As in the reference implementation (fairseq), a distractor
    whose quantised vector equals the positive exactly (the same codewords) is left out of the
    denominator: it cannot be told apart. Computed in float32 (float64 stays float64), autocast
    disabled.

    Args:
        context: ``(B, F, D)`` float, the context network's outputs projected to D.
        quantized: ``(B, F, D)`` float, the quantised latents projected to D.
        negative_indices: ``(B, F, K) int64`` from
            :func:`~ssl_models.speech.negative_sampling.sample_negative_indices`: frame indices
            into the same utterance, -1 on frames that are not anchors.
        temperature: kappa > 0 (wav2vec 2.0: 0.1).

    Returns:
        Scalar float32, the mean of ``L_t`` over the anchors.

    Raises:
        ValueError: Shapes disagree, the temperature is not positive, or there is no anchor
            (no utterance has 2 masked frames).

    Reference: Baevski et al., arXiv:2006.11477, eq. (3).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if (
        context.ndim != 3
        or quantized.shape != context.shape
        or negative_indices.ndim != 3
        or negative_indices.shape[:2] != context.shape[:2]
    ):
        raise ValueError(
            f"context and quantized must be (B, F, D) and negative_indices (B, F, K), got "
            f"{tuple(context.shape)}, {tuple(quantized.shape)}, {tuple(negative_indices.shape)}"
        )
    anchors = negative_indices[..., 0] >= 0
    if not anchors.any():
        raise ValueError("no anchor: every utterance has fewer than 2 masked frames")
    with float32_region(context):
        c = upcast(context)
        q = upcast(quantized)
        b_idx, t_idx = anchors.nonzero(as_tuple=True)  # (N,)
        neg = negative_indices[b_idx, t_idx]  # (N, K)
        c_a = c[b_idx, t_idx]  # (N, D)
        pos = q[b_idx, t_idx]  # (N, D)
        negs = q[b_idx[:, None], neg]  # (N, K, D)
        targets = torch.cat([pos[:, None], negs], dim=1)  # (N, 1 + K, D)
        logits = F.cosine_similarity(c_a[:, None], targets, dim=-1) / temperature
        same_as_positive = (negs == pos[:, None]).all(dim=-1)  # (N, K)
        drop = torch.cat([torch.zeros_like(same_as_positive[:, :1]), same_as_positive], dim=1)
        logits = logits.masked_fill(drop, float("-inf"))
        labels = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, labels)


__all__ = ["wav2vec2_contrastive_loss"]
