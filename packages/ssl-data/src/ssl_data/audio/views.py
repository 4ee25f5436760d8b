"""Speech view generators: contrastive waveform views, log-mel + SpecAugment, wav2vec 2.0 masks.

Same calling convention as the image views (:mod:`ssl_data.views`): ``gen(waveforms, indices,
epoch)`` returns a list of tensors, and every random parameter is a function of (seed, epoch,
sample index, view): view ``v`` reads ``uniform(seed, epoch, index, n, stream=v)`` for its
waveform operations then its SpecAugment masks; the wav2vec 2.0 span mask reads stream
:data:`MASK_STREAM`. Clips may have any length: pass a padded ``(B, T)`` batch with ``lengths=``,
or a list of ``(T_i,)`` clips; a clip gives the same views alone as in any batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ssl_data.audio.compose import AudioCompose, AudioOp, Waveforms, prepare_waveforms
from ssl_data.audio.crop import PadPosition, RandomCrop
from ssl_data.audio.features import LogMelSpectrogram
from ssl_data.audio.gain import RandomGain
from ssl_data.audio.noise import AdditiveNoise
from ssl_data.audio.span_mask import (
    WAV2VEC2_CONV_KERNEL,
    WAV2VEC2_CONV_STRIDE,
    SpanMask,
    conv_output_lengths,
)
from ssl_data.audio.spec_augment import SpecAugment
from ssl_data.audio.time_shift import RandomTimeShift, ShiftMode
from ssl_data.randomness import uniform
from ssl_data.views.pipeline import check_indices

MASK_STREAM = 1 << 17
Lengths = Sequence[int] | np.ndarray | torch.Tensor | None


@dataclass(frozen=True)
class AudioViewPipeline:
    """The operations of one speech view: waveform ops, then optional log-mel and SpecAugment.

    Args:
        ops: Waveform operations (crop first, so every view has one length).
        features: Log-mel front end, or ``None`` to return waveforms.
        spec_augment: Masking of the log-mel features (needs ``features``), or ``None``.

    Raises:
        ValueError: ``spec_augment`` without ``features``.
    """

    ops: Sequence[AudioOp]
    features: LogMelSpectrogram | None = None
    spec_augment: SpecAugment | None = None

    def __post_init__(self) -> None:
        if self.spec_augment is not None and self.features is None:
            raise ValueError("spec_augment needs features (a LogMelSpectrogram) to act on")

    @property
    def num_uniforms(self) -> int:
        """Uniform columns of the view's stream: the waveform ops', then SpecAugment's."""
        masks = 0 if self.spec_augment is None else self.spec_augment.num_uniforms
        return AudioCompose(self.ops).num_uniforms + masks

    def __call__(
        self,
        waveforms: torch.Tensor,
        lengths: np.ndarray,
        indices: np.ndarray,
        epoch: int,
        seed: int,
        stream: int,
    ) -> tuple[torch.Tensor, np.ndarray]:
        """One view of a batch.

        Args:
            waveforms: ``(B, T) float32``, zero past each length.
            lengths: ``(B,) int64`` real lengths in samples.
            indices: ``(B,) int64`` dataset indices.
            epoch: Epoch number.
            seed: Run seed.
            stream: The view's random stream (its view number).

        Returns:
            The view, ``(B, N) float32`` waveforms or ``(B, n_mels, frames) float32`` features,
            and its ``(B,) int64`` real lengths (samples, or frames for features).
        """
        compose = AudioCompose(self.ops)
        u = uniform(seed, epoch, indices, max(1, self.num_uniforms), stream)
        x, lens = compose(waveforms, u[:, : compose.num_uniforms], lengths)
        if self.features is None:
            return x, lens
        feats = self.features(x, lens)
        frames = np.minimum(self.features.num_frames(lens), feats.shape[2])
        if self.spec_augment is not None:
            feats = self.spec_augment(feats, u[:, compose.num_uniforms :], frames)
        return feats, frames


def waveform_ops(
    *,
    crop_seconds: float,
    sample_rate: int,
    pad: PadPosition,
    gain_db: tuple[float, float],
    gain_p: float,
    snr_db: tuple[float, float],
    noise_p: float,
    noise: Sequence[torch.Tensor | np.ndarray] | None,
    shift_seconds: float,
    shift_mode: ShiftMode,
    shift_p: float,
) -> tuple[AudioOp, ...]:
    """Crop, gain, additive noise, time shift: the contrastive waveform chain.

    Uniform columns: crop (1), gain (2), noise (4), shift (2).
    """
    return (
        RandomCrop(crop_seconds, sample_rate, pad),
        RandomGain(gain_db[0], gain_db[1], gain_p),
        AdditiveNoise(snr_db, noise, noise_p),
        RandomTimeShift(shift_seconds, sample_rate, shift_mode, shift_p),
    )


@dataclass(frozen=True)
class ContrastiveAudioView:
    """Two views of each clip: independent random crops, then gain, additive noise, time shift.

    COLA's recipe is two random segments of the same clip (Saeed et al., arXiv:2010.10915: 960 ms
    crops, log-mel front end); gain, noise and shift are the usual waveform augmentations on
    top, each applied with its own probability (set ``gain_p = noise_p = shift_p = 0`` for plain
    COLA). With ``features`` set, each view is returned as log-mel features instead.

    Args:
        sample_rate: Rate of the input waveforms in Hz.
        crop_seconds: Length of each view in seconds (COLA: 0.96).
        pad: Placement of clips shorter than the crop (see :class:`RandomCrop`).
        gain_db: Gain range in dB.
        gain_p: Probability of a gain.
        snr_db: SNR range in dB of the additive noise.
        noise_p: Probability of adding noise.
        noise: Noise clips at ``sample_rate``, or ``None`` for white Gaussian noise.
        shift_seconds: Largest time shift in seconds.
        shift_mode: ``"roll"`` or ``"zero"``.
        shift_p: Probability of a shift.
        features: Optional log-mel front end applied to each view.
        seed: Run seed.

    Raises:
        ValueError: Any operation's parameter out of range, or ``features`` at another rate.

    Reference: Saeed, Grangier, Zeghidour, "Contrastive Learning of General-Purpose Audio
    Representations", arXiv:2010.10915.
    """

    sample_rate: int = 16000
    crop_seconds: float = 0.96
    pad: PadPosition = "end"
    gain_db: tuple[float, float] = (-6.0, 6.0)
    gain_p: float = 0.5
    snr_db: tuple[float, float] = (10.0, 40.0)
    noise_p: float = 0.5
    noise: Sequence[torch.Tensor | np.ndarray] | None = field(default=None, repr=False)
    shift_seconds: float = 0.1
    shift_mode: ShiftMode = "roll"
    shift_p: float = 0.5
    features: LogMelSpectrogram | None = None
    seed: int = 0
    _pipeline: AudioViewPipeline = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ops = waveform_ops(crop_seconds=self.crop_seconds, sample_rate=self.sample_rate,
                           pad=self.pad, gain_db=self.gain_db, gain_p=self.gain_p,
                           snr_db=self.snr_db, noise_p=self.noise_p, noise=self.noise,
                           shift_seconds=self.shift_seconds, shift_mode=self.shift_mode,
                           shift_p=self.shift_p)  # fmt: skip
        if self.features is not None and self.features.sample_rate != self.sample_rate:
            raise ValueError(
                f"features.sample_rate ({self.features.sample_rate} Hz) must equal sample_rate "
                f"({self.sample_rate} Hz)"
            )
        object.__setattr__(self, "_pipeline", AudioViewPipeline(ops, self.features))

    def view(
        self, waveforms: Waveforms, indices: Sequence[int] | np.ndarray, epoch: int, view: int,
        lengths: Lengths = None,
    ) -> torch.Tensor:  # fmt: skip
        """One view of a batch.

        Args:
            waveforms: ``(B, T)`` float (or int16 PCM) with ``lengths``, or a list of ``(T_i,)``.
            indices: ``(B,)`` dataset indices (they seed the parameters).
            epoch: Epoch number.
            view: View number (0 or 1).
            lengths: ``(B,)`` real lengths in samples of a padded batch; default ``T``.

        Returns:
            ``(B, N) float32`` waveforms, ``N = round(crop_seconds * sample_rate)``, or
            ``(B, n_mels, 1 + N // hop) float32`` with ``features``.

        Raises:
            ValueError: Shapes disagree.
        """
        return self._views(waveforms, indices, epoch, (view,), lengths)[0]

    def _views(
        self, waveforms: Waveforms, indices: Sequence[int] | np.ndarray, epoch: int,
        views: Sequence[int], lengths: Lengths,
    ) -> list[torch.Tensor]:  # fmt: skip
        x, lens = prepare_waveforms(waveforms, lengths)
        idx = check_indices(indices, x.shape[0])
        return [self._pipeline(x, lens, idx, epoch, self.seed, v)[0] for v in views]

    def __call__(
        self, waveforms: Waveforms, indices: Sequence[int] | np.ndarray, epoch: int,
        lengths: Lengths = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Two views of a batch (see :meth:`view`)."""
        a, b = self._views(waveforms, indices, epoch, (0, 1), lengths)
        return a, b


@dataclass(frozen=True)
class LogMelSpecAugmentView:
    """Random crop, log-mel features, SpecAugment masking; ``num_views`` views per clip.

    Defaults: 80 log-mel bands from 25 ms windows every 10 ms at 16 kHz, SpecAugment's LD
    policy (two frequency masks of up to 27 bands, two time masks of up to 100 frames and 20%
    of the clip).

    Args:
        sample_rate: Rate of the input waveforms in Hz.
        crop_seconds: Crop length in seconds (shorter clips are zero-padded at the end, and the
            time masks stay inside their real frames).
        features: The log-mel front end (its ``sample_rate`` must equal ``sample_rate``).
        spec_augment: The masking policy.
        num_views: Views per clip (1 for supervised-style training, 2 for two-view methods).
        seed: Run seed.

    Raises:
        ValueError: ``num_views`` below 1, or the front end's rate differs.

    Reference: Park et al., "SpecAugment", arXiv:1904.08779.
    """

    sample_rate: int = 16000
    crop_seconds: float = 2.0
    features: LogMelSpectrogram = field(default_factory=LogMelSpectrogram)
    spec_augment: SpecAugment = field(default_factory=SpecAugment)
    num_views: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {self.num_views}")
        if self.features.sample_rate != self.sample_rate:
            raise ValueError(
                f"features.sample_rate ({self.features.sample_rate} Hz) must equal sample_rate "
                f"({self.sample_rate} Hz)"
            )

    def view(
        self, waveforms: Waveforms, indices: Sequence[int] | np.ndarray, epoch: int, view: int,
        lengths: Lengths = None,
    ) -> torch.Tensor:  # fmt: skip
        """One view: ``(B, n_mels, 1 + N // hop) float32`` masked log-mel features.

        Args:
            waveforms: ``(B, T)`` float (or int16 PCM) with ``lengths``, or a list of ``(T_i,)``.
            indices: ``(B,)`` dataset indices.
            epoch: Epoch number.
            view: View number.
            lengths: ``(B,)`` real lengths in samples; default ``T``.

        Raises:
            ValueError: Shapes disagree.
        """
        return self._views(waveforms, indices, epoch, (view,), lengths)[0]

    def _views(
        self, waveforms: Waveforms, indices: Sequence[int] | np.ndarray, epoch: int,
        views: Sequence[int], lengths: Lengths,
    ) -> list[torch.Tensor]:  # fmt: skip
        x, lens = prepare_waveforms(waveforms, lengths)
        idx = check_indices(indices, x.shape[0])
        pipeline = AudioViewPipeline(
            (RandomCrop(self.crop_seconds, self.sample_rate, "end"),),
            self.features,
            self.spec_augment,
        )
        return [pipeline(x, lens, idx, epoch, self.seed, v)[0] for v in views]

    def __call__(
        self, waveforms: Waveforms, indices: Sequence[int] | np.ndarray, epoch: int,
        lengths: Lengths = None,
    ) -> list[torch.Tensor]:  # fmt: skip
        """``num_views`` views (see :meth:`view`)."""
        return self._views(waveforms, indices, epoch, range(self.num_views), lengths)


@dataclass(frozen=True)
class Wav2Vec2MaskView:
    """A cropped waveform and the wav2vec 2.0 span mask over its feature-encoder frames.

    The crop is ``crop_seconds`` long (shorter clips are zero-padded at the end); the mask
    covers the ``conv_output_lengths`` frames of the crop and is False on the frames of padding
    (its random stream is :data:`MASK_STREAM`).

    Args:
        sample_rate: Rate of the input waveforms in Hz.
        crop_seconds: Crop length in seconds.
        mask_prob: Share of frames masked before overlaps (wav2vec 2.0: 0.65).
        mask_length: Span length in frames (wav2vec 2.0: 10).
        min_masks: Least spans per clip (transformers' ``mask_time_min_masks``: 2).
        conv_kernel: Feature-encoder kernel sizes (wav2vec 2.0's by default).
        conv_stride: Feature-encoder strides.
        seed: Run seed.

    Raises:
        ValueError: Bad mask or convolution parameters, or a crop with no sample.

    Reference: Baevski et al., "wav2vec 2.0", arXiv:2006.11477.
    """

    sample_rate: int = 16000
    crop_seconds: float = 4.0
    mask_prob: float = 0.65
    mask_length: int = 10
    min_masks: int = 2
    conv_kernel: tuple[int, ...] = WAV2VEC2_CONV_KERNEL
    conv_stride: tuple[int, ...] = WAV2VEC2_CONV_STRIDE
    seed: int = 0

    def __post_init__(self) -> None:
        SpanMask(self.mask_prob, self.mask_length, self.min_masks)
        RandomCrop(self.crop_seconds, self.sample_rate)
        conv_output_lengths(1, self.conv_kernel, self.conv_stride)

    def __call__(
        self, waveforms: Waveforms, indices: Sequence[int] | np.ndarray, epoch: int,
        lengths: Lengths = None,
    ) -> list[torch.Tensor]:  # fmt: skip
        """The crop, its real lengths and the frame mask.

        Args:
            waveforms: ``(B, T)`` float (or int16 PCM) with ``lengths``, or a list of ``(T_i,)``.
            indices: ``(B,)`` dataset indices.
            epoch: Epoch number.
            lengths: ``(B,)`` real lengths in samples; default ``T``.

        Returns:
            ``[waveforms (B, N) float32, lengths (B,) int64 samples, mask (B, F) bool]`` with
            ``F = conv_output_lengths(N)`` and True = masked.

        Raises:
            ValueError: Shapes disagree.
        """
        x, lens = prepare_waveforms(waveforms, lengths)
        idx = check_indices(indices, x.shape[0])
        crop = RandomCrop(self.crop_seconds, self.sample_rate, "end")
        pipeline = AudioViewPipeline((crop,))
        out, out_lens = pipeline(x, lens, idx, epoch, self.seed, 0)
        frames = conv_output_lengths(out_lens, self.conv_kernel, self.conv_stride)
        total = int(conv_output_lengths(crop.num_samples, self.conv_kernel, self.conv_stride))
        masker = SpanMask(self.mask_prob, self.mask_length, self.min_masks)
        u = uniform(self.seed, epoch, idx, masker.num_uniforms(total), MASK_STREAM)
        mask = torch.from_numpy(masker(u, frames, total)).to(out.device)
        return [out, torch.from_numpy(out_lens).to(out.device), mask]
