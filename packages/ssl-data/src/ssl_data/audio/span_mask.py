"""wav2vec 2.0 span masking of feature frames, valid for every sequence length and padding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ssl_data.randomness import uniform

WAV2VEC2_CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
WAV2VEC2_CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)


def conv_output_lengths(
    num_samples: int | np.ndarray,
    conv_kernel: Sequence[int] = WAV2VEC2_CONV_KERNEL,
    conv_stride: Sequence[int] = WAV2VEC2_CONV_STRIDE,
) -> np.ndarray:
    """Frames a stack of unpadded 1-D convolutions makes of ``num_samples`` samples.

    Each layer maps ``L`` to ``floor((L - kernel) / stride) + 1``, floored at 0 (a clip shorter
    than the receptive field gives no frame). The defaults are wav2vec 2.0's feature encoder:
    400-sample receptive field, 320-sample (20 ms at 16 kHz) hop.

    Args:
        num_samples: Clip length(s) in samples, int or ``(B,)`` int array.
        conv_kernel: Kernel size of each layer.
        conv_stride: Stride of each layer.

    Returns:
        ``int64`` frame count(s), the shape of ``num_samples``.

    Raises:
        ValueError: Kernel and stride lists of different lengths or entries below 1.

    Reference: Baevski et al., "wav2vec 2.0", arXiv:2006.11477, Section 2.
    """
    if len(conv_kernel) != len(conv_stride) or min((*conv_kernel, *conv_stride), default=1) < 1:
        raise ValueError(
            f"conv_kernel and conv_stride must be equally long lists of ints >= 1, got "
            f"{conv_kernel}, {conv_stride}"
        )
    n = np.asarray(num_samples, dtype=np.int64)
    for k, s in zip(conv_kernel, conv_stride, strict=True):
        n = np.maximum((n - k) // s + 1, 0)
    return n


@dataclass(frozen=True)
class SpanMask:
    """Random spans of ``mask_length`` frames, as wav2vec 2.0 masks its latent features.

    For a sequence of ``L`` real frames (``transformers``' ``_compute_mask_indices`` semantics
    when ``L >= mask_length``): ``n = int(mask_prob * L / m + eps)`` spans, ``eps`` uniform in
    [0, 1) per sample (probabilistic rounding), at least ``min_masks``, at most ``L // m`` and at
    most ``L - m + 1``; their starts are ``n`` distinct positions drawn uniformly from
    ``{0, ..., L - m}``; spans may overlap, so ``mask_prob`` bounds the expected masked share.
    Here ``m = min(mask_length, L)``: a sequence shorter than one span gets spans shortened to
    its length (the whole sequence is masked with probability about ``mask_prob``) instead of
    an error, and every masked index lies in ``[0, L)``: padding is never masked, for any ``L``
    from 0 up.

    Reads ``seq_len + 1`` uniforms per sample: ``eps``, then one priority per start position
    (the ``n`` valid starts with the smallest priorities are chosen).

    Args:
        mask_prob: Share of frames to mask before overlaps (wav2vec 2.0: 0.65, i.e. starts
            drawn with p = 0.065 and M = 10).
        mask_length: Span length ``M`` in frames.
        min_masks: Least number of spans per sample (capped as above).

    Raises:
        ValueError: ``mask_prob`` outside [0, 1], ``mask_length`` below 1 or ``min_masks``
            below 0.

    Reference: Baevski et al., "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech
    Representations", arXiv:2006.11477, Sections 3.1 and 4.2.
    """

    mask_prob: float = 0.65
    mask_length: int = 10
    min_masks: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be in [0, 1], got {self.mask_prob}")
        if self.mask_length < 1:
            raise ValueError(f"mask_length must be >= 1 frame, got {self.mask_length}")
        if self.min_masks < 0:
            raise ValueError(f"min_masks must be >= 0, got {self.min_masks}")

    def num_uniforms(self, seq_len: int) -> int:
        """``seq_len + 1``: ``eps``, then a priority per start position."""
        return seq_len + 1

    def num_spans(self, lengths: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """``(B,) int64`` spans per sample for real lengths ``lengths`` and roundings ``eps``."""
        lens = np.asarray(lengths, dtype=np.int64)
        m = np.maximum(np.minimum(self.mask_length, lens), 1)
        n = np.floor(self.mask_prob * lens / m + eps).astype(np.int64)
        n = np.maximum(n, self.min_masks)
        n = np.minimum(n, lens // m)
        n = np.minimum(n, np.maximum(lens - m + 1, 0))
        return np.where(lens > 0, n, 0)

    def starts_and_lengths(
        self, u: np.ndarray, lengths: np.ndarray, seq_len: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The chosen span starts and the span length of each sample.

        Args:
            u: ``(B, seq_len + 1) float64`` uniforms.
            lengths: ``(B,) int64`` real frames per sample, in ``[0, seq_len]``.
            seq_len: Padded sequence length.

        Returns:
            ``starts (B, seq_len) bool`` (True where a span starts) and ``span (B,) int64``.

        Raises:
            ValueError: Shapes disagree or a length outside ``[0, seq_len]``.
        """
        lens = np.asarray(lengths, dtype=np.int64).reshape(-1)
        b = len(lens)
        if u.ndim != 2 or u.shape[0] != b or u.shape[1] < seq_len + 1:
            raise ValueError(
                f"SpanMask needs uniforms of shape ({b}, {seq_len + 1}), got {u.shape}"
            )
        if b and (lens.min() < 0 or lens.max() > seq_len):
            raise ValueError(f"lengths must be in [0, {seq_len}] frames, got {lens}")
        span = np.maximum(np.minimum(self.mask_length, lens), 1)
        n = self.num_spans(lens, u[:, 0])
        positions = np.arange(seq_len)[None, :]
        priority = np.where(positions <= (lens - span)[:, None], u[:, 1 : seq_len + 1], np.inf)
        rank = np.argsort(np.argsort(priority, axis=1, kind="stable"), axis=1, kind="stable")
        return rank < n[:, None], span

    def __call__(self, u: np.ndarray, lengths: np.ndarray, seq_len: int) -> np.ndarray:
        """The span mask.

        Args:
            u: ``(B, seq_len + 1) float64`` uniforms in [0, 1).
            lengths: ``(B,) int64`` real frames per sample, in ``[0, seq_len]``.
            seq_len: Padded sequence length (frames).

        Returns:
            ``(B, seq_len) bool``, True = masked (``mask_time_indices`` in transformers); False on
            every padded frame.

        Raises:
            ValueError: Shapes disagree or a length outside ``[0, seq_len]``.
        """
        starts, span = self.starts_and_lengths(u, lengths, seq_len)
        # Frame t is masked when a span starts in (t - span, t]: a difference of prefix sums.
        c = np.concatenate([np.zeros((len(span), 1), np.int64), np.cumsum(starts, 1)], axis=1)
        t = np.arange(1, seq_len + 1)[None, :]
        before = np.take_along_axis(c, np.maximum(t - span[:, None], 0), axis=1)
        return (c[:, 1:] - before) > 0


def compute_span_mask(
    lengths: Sequence[int] | np.ndarray | torch.Tensor,
    indices: Sequence[int] | np.ndarray,
    epoch: int,
    *,
    seq_len: int | None = None,
    mask_prob: float = 0.65,
    mask_length: int = 10,
    min_masks: int = 0,
    seed: int = 0,
    stream: int = 0,
) -> np.ndarray:
    """wav2vec 2.0 span mask of a batch, a pure function of (seed, epoch, sample index, stream).

    Args:
        lengths: ``(B,)`` real frames per sample.
        indices: ``(B,)`` dataset indices (they seed the masks).
        epoch: Epoch number.
        seq_len: Padded length; default ``max(lengths)``.
        mask_prob: See :class:`SpanMask` (wav2vec 2.0: 0.65).
        mask_length: Span length in frames (wav2vec 2.0: 10).
        min_masks: Least spans per sample.
        seed: Run seed.
        stream: Random stream of this mask.

    Returns:
        ``(B, seq_len) bool``, True = masked, never True at or past a sample's length.

    Raises:
        ValueError: Bad parameters, shapes disagree, or a length outside ``[0, seq_len]``.

    Reference: Baevski et al., arXiv:2006.11477.
    """
    if isinstance(lengths, torch.Tensor):
        lengths = lengths.detach().cpu().numpy()
    lens = np.asarray(lengths, dtype=np.int64).reshape(-1)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.shape != lens.shape:
        raise ValueError(f"indices must be ({len(lens)},) (one per sample), got {idx.shape}")
    total = int(lens.max(initial=0)) if seq_len is None else seq_len
    masker = SpanMask(mask_prob, mask_length, min_masks)
    u = uniform(seed, epoch, idx, masker.num_uniforms(total), stream)
    return masker(u, lens, total)
