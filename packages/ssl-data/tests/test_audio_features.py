import math

import numpy as np
import pytest
import torch

from ssl_data import uniform
from ssl_data.audio import (
    LogMelSpectrogram,
    SpanMask,
    SpecAugment,
    compute_span_mask,
    conv_output_lengths,
    decode_audio,
    mel_filterbank,
)
from ssl_data.datasets.asterisk import bundled_sample_root


def htk_mel(f):
    return 2595 * math.log10(1 + f / 700)


def slaney_mel(f):  # Slaney's Auditory Toolbox: linear to 1 kHz, then 27 steps per factor 6.4
    return 3 * f / 200 if f < 1000 else 15 + 27 * math.log(f / 1000) / math.log(6.4)


def centers_hz(to_mel, n_mels, f_max):
    """Filter centres computed independently: equal mel steps, inverted by bisection."""
    mels = np.linspace(to_mel(0.0), to_mel(f_max), n_mels + 2)[1:-1]
    out = []
    for m in mels:
        lo, hi = 0.0, f_max
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if to_mel(mid) < m else (lo, mid)
        out.append(lo)
    return np.array(out)


# ---------------------------------------------------------------- log-mel


@pytest.mark.parametrize("scale, to_mel", [("htk", htk_mel), ("slaney", slaney_mel)])
@pytest.mark.parametrize("freq", [300.0, 1000.0, 2500.0, 6000.0])
def test_log_mel_of_a_pure_tone_peaks_in_the_nearest_mel_bin(scale, to_mel, freq):
    rate = 16000
    lm = LogMelSpectrogram(sample_rate=rate, n_fft=1024, hop_length=256, n_mels=40, mel_scale=scale)
    t = np.arange(rate) / rate
    feats = lm(torch.from_numpy(np.sin(2 * np.pi * freq * t).astype(np.float32)))
    assert feats.shape == (1, 40, 1 + rate // 256)
    centres = centers_hz(to_mel, 40, rate / 2)
    np.testing.assert_allclose(lm.mel_centers(), centres, rtol=1e-6)
    peak = int(feats[0, :, 5:-5].mean(1).argmax())
    assert peak == int(np.abs(centres - freq).argmin())
    # The tone's band is far above the bands two filters away (triangles do not reach there).
    level = feats[0, :, 5:-5].mean(1)
    far = [k for k in range(40) if abs(k - peak) >= 3]
    assert (level[peak] - level[far]).min() > 5  # natural log: > 5 = 148x the power


@pytest.mark.parametrize("scale, to_mel", [("htk", htk_mel), ("slaney", slaney_mel)])
def test_filterbank_equals_triangles_between_independent_centres(scale, to_mel):
    rate, n_fft, n_mels = 16000, 1024, 40
    mels = np.linspace(to_mel(0.0), to_mel(rate / 2), n_mels + 2)
    edges = np.concatenate([[0.0], centers_hz(to_mel, n_mels, rate / 2), [rate / 2]])
    assert np.allclose([to_mel(e) for e in edges], mels, atol=1e-6)
    freqs = np.arange(n_fft // 2 + 1) * rate / n_fft
    lo, mid, hi = edges[:-2][None], edges[1:-1][None], edges[2:][None]
    f = freqs[:, None]
    ref = np.maximum(0, np.minimum((f - lo) / (mid - lo), (hi - f) / (hi - mid)))
    fb = mel_filterbank(n_fft // 2 + 1, n_mels, rate, mel_scale=scale).numpy()
    np.testing.assert_allclose(fb, ref, atol=1e-5)
    area = mel_filterbank(n_fft // 2 + 1, n_mels, rate, mel_scale=scale, norm="slaney").numpy()
    np.testing.assert_allclose(area, ref * 2 / (hi - lo), rtol=1e-4, atol=1e-9)


def test_frame_count_hop_in_ms_and_padding_invariance():
    lm = LogMelSpectrogram(sample_rate=8000, n_fft=200, hop_ms=10.0, n_mels=40)
    assert lm.hop == 80
    x, _ = decode_audio(bundled_sample_root() / "en_US_f_Allison" / "digits" / "4.flac")
    n = len(x)
    single = lm(torch.from_numpy(x))
    padded = lm(torch.from_numpy(np.concatenate([x, np.ones(800, np.float32)]))[None], [n])
    assert single.shape[2] == 1 + n // 80 == lm.num_frames(n)
    frames = int(lm.num_frames(n))
    # Real frames away from the end are unchanged by padding (padding is zeroed, then ignored).
    np.testing.assert_allclose(padded[0, :, : frames - 2], single[0, :, : frames - 2], atol=1e-4)
    assert lm(torch.zeros(2, 0)).shape == (2, 40, 1)
    with pytest.raises(ValueError, match="not both"):
        LogMelSpectrogram(hop_length=160, hop_ms=10)


# ---------------------------------------------------------------- SpecAugment


def test_spec_augment_masks_exactly_the_sampled_widths():
    b, n_mels, n = 64, 40, 120
    frames = np.arange(b) % 60 + 61  # real frames 61 ... 120
    spec = torch.rand(b, n_mels, n) + 1.0  # no cell is 0 before masking
    aug = SpecAugment(freq_mask_param=15, num_freq_masks=1, time_mask_param=30,
                      num_time_masks=1, time_mask_ratio=0.2)  # fmt: skip
    u = uniform(0, 0, range(b), aug.num_uniforms)
    out = aug(spec, u, frames)
    freq, time = aug.masks(u, n_mels, frames)
    for i in range(b):
        f0, f = freq[i, 0]
        t0, t = time[i, 0]
        masked = (out[i] == 0).numpy()
        rows = np.flatnonzero(masked.all(1))
        cols = np.flatnonzero(masked.all(0))
        if f > 0:
            assert list(rows) == list(range(f0, f0 + f))
        if t > 0:
            assert list(cols) == list(range(t0, t0 + t))
            assert t0 + t <= frames[i]  # never in the padding
        assert masked.sum() == f * n + t * n_mels - f * t
        assert 0 <= f <= 15 and 0 <= t <= min(30, math.floor(0.2 * frames[i]))
    widths_f, widths_t = freq[:, 0, 1], time[:, 0, 1]
    assert len(set(widths_f.tolist())) > 8 and len(set(widths_t.tolist())) > 8
    assert torch.equal(out[out != 0], spec[out != 0])


def test_spec_augment_mean_fill_and_defaults_are_park_ld():
    aug = SpecAugment(mask_value="mean")
    assert (aug.freq_mask_param, aug.num_freq_masks, aug.time_mask_param,
            aug.num_time_masks, aug.time_mask_ratio) == (27, 2, 100, 2, 0.2)  # fmt: skip
    spec = torch.rand(8, 80, 50)
    u = uniform(0, 0, range(8), aug.num_uniforms)
    out = aug(spec, u)
    changed = out != spec
    means = spec.mean((1, 2))
    for i in range(8):
        assert changed[i].sum() > 0
        np.testing.assert_allclose(out[i][changed[i]].numpy(), means[i].item(), rtol=1e-6)


# ---------------------------------------------------------------- wav2vec 2.0 span mask


@pytest.mark.parametrize("length", [1, 9, 10, 11])
def test_span_mask_any_length_single_sequence(length):
    mask = compute_span_mask([length] * 2000, range(2000), 0, mask_prob=0.65, mask_length=10)
    assert mask.shape == (2000, length)
    share = mask.mean()
    assert 0.3 < share <= 1.0
    if length < 10:  # the span shrinks to the sequence: all or nothing, ~65% of the time
        full = mask.all(1)
        assert (full | ~mask.any(1)).all()
        assert 0.6 < full.mean() < 0.7


def test_span_mask_padded_batch_never_masks_padding():
    lengths = np.array([1, 9, 10, 11, 0, 37, 400] * 300)
    mask = compute_span_mask(lengths, range(len(lengths)), 3, seq_len=400)
    positions = np.arange(400)[None, :]
    assert mask.shape == (len(lengths), 400)
    assert not (mask & (positions >= lengths[:, None])).any()
    for length in (1, 9, 10, 11, 37, 400):
        assert mask[lengths == length].any(1).mean() > 0.5


def reference_share(length, span, prob, trials, rng):
    """Masked share under transformers' ``_compute_mask_indices`` rule, re-implemented here."""
    total = 0
    for _ in range(trials):
        n = int(prob * length / span + rng.random())
        n = min(n, length // span, length - span + 1)
        starts = rng.choice(length - span + 1, n, replace=False)
        mask = np.zeros(length, bool)
        for s in starts:
            mask[s : s + span] = True
        total += mask.mean()
    return total / trials


def test_span_mask_runs_are_whole_spans_and_match_the_reference_share():
    masker = SpanMask(0.65, 10)
    u = uniform(0, 0, range(4000), masker.num_uniforms(100))
    mask = masker(u, np.full(4000, 100), 100)
    # Every masked run is at least one span long (spans may merge, never be cut).
    edges = np.diff(np.pad(mask.astype(int), ((0, 0), (1, 1))), axis=1)
    runs = np.flatnonzero(edges.ravel() == -1) - np.flatnonzero(edges.ravel() == 1)
    assert runs.min() >= 10
    ref = reference_share(100, 10, 0.65, 4000, np.random.default_rng(0))
    assert abs(mask.mean() - ref) < 0.01, (mask.mean(), ref)
    starts, _ = masker.starts_and_lengths(u, np.full(4000, 100), 100)
    n = starts.sum(1)
    assert set(n.tolist()) == {6, 7}  # int(0.65 * 100 / 10 + eps)
    assert abs((n == 7).mean() - 0.5) < 0.03  # eps uniform: 7 spans half of the time
    counts = starts.sum(0)
    assert counts[91:].sum() == 0 and counts[:91].min() > 0.5 * counts[:91].mean()


def test_span_mask_determinism_and_conv_lengths():
    a = compute_span_mask([50, 20], [7, 8], 1, seed=4)
    assert np.array_equal(a, compute_span_mask([50, 20], [7, 8], 1, seed=4))
    assert not np.array_equal(a, compute_span_mask([50, 20], [7, 8], 2, seed=4))
    # wav2vec 2.0 encoder: 400-sample receptive field, 320-sample hop.
    assert list(conv_output_lengths(np.array([0, 399, 400, 719, 720, 16000]))) == [
        0, 0, 1, 1, 2, 49]  # fmt: skip
    with pytest.raises(ValueError, match="mask_prob"):
        SpanMask(1.5)
