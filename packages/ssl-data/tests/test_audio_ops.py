import io

import numpy as np
import pytest
import soundfile as sf
import torch

from ssl_data import CorruptFileError, uniform
from ssl_data.audio import (
    AdditiveNoise,
    RandomCrop,
    RandomGain,
    RandomTimeShift,
    decode_audio,
    pad_batch,
    prepare_waveforms,
    resample,
    white_noise,
)
from ssl_data.datasets.asterisk import bundled_sample_root

SAMPLE = bundled_sample_root()


def clip(speaker: str, name: str) -> np.ndarray:
    """A real 8 kHz recording from the bundled Asterisk sample, as int16 PCM."""
    sub = "digits" if name.isdigit() else "letters"
    data, rate = sf.read(SAMPLE / speaker / sub / f"{name}.flac", dtype="int16")
    assert rate == 8000
    return data


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    """Peak of a zero-padded, Hann-windowed spectrum, refined by parabolic interpolation."""
    n = 1 << 20
    mag = np.abs(np.fft.rfft(x * np.hanning(len(x)), n))
    k = int(mag.argmax())
    a, b, c = np.log(mag[k - 1 : k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / n


# ---------------------------------------------------------------- decoding


def test_mono_mixdown_is_the_channel_mean():
    a, b = clip("en_US_f_Allison", "7"), clip("fr_CA_f_June", "7")
    n = min(len(a), len(b))
    stereo = np.stack([a[:n], b[:n]], axis=1)  # (T, 2) int16
    buf = io.BytesIO()
    sf.write(buf, stereo, 8000, format="WAV", subtype="PCM_16")
    mono, rate = decode_audio(buf.getvalue())
    both, _ = decode_audio(buf.getvalue(), mono=False)
    assert rate == 8000 and mono.dtype == np.float32 and both.shape == (2, n)
    expected = (a[:n].astype(np.float64) + b[:n]) / 2 / 32768
    np.testing.assert_allclose(mono, expected, rtol=0, atol=1e-7)
    np.testing.assert_allclose(both[1], b[:n] / 32768, rtol=0, atol=0)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_decode_path_and_bytes_for_wav_flac_ogg(tmp_path, fmt):
    x = clip("en_US_f_Allison", "3")
    path = tmp_path / f"three.{fmt.lower()}"
    sf.write(path, x, 8000, format=fmt)
    from_path, rate = decode_audio(path)
    from_bytes, _ = decode_audio(path.read_bytes())
    np.testing.assert_array_equal(from_path, from_bytes)
    assert rate == 8000
    ref = x / 32768
    if fmt == "OGG":  # lossy: the waveform is close, not equal
        assert abs(len(from_path) - len(ref)) <= 1
        n = min(len(ref), len(from_path))
        assert np.corrcoef(from_path[:n], ref[:n])[0, 1] > 0.99
    else:
        np.testing.assert_array_equal(from_path, ref.astype(np.float32))


def test_undecodable_input_raises_corrupt_file_error_naming_it(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(100))
    with pytest.raises(CorruptFileError, match="bad.wav"):
        decode_audio(bad)
    with pytest.raises(CorruptFileError, match="116 bytes"):
        decode_audio(bad.read_bytes())
    with pytest.raises(FileNotFoundError):
        decode_audio(tmp_path / "missing.wav")


def test_decode_resamples_to_the_target_rate():
    x, rate = decode_audio(SAMPLE / "en_US_f_Allison" / "digits" / "5.flac", sample_rate=16000)
    native, _ = decode_audio(SAMPLE / "en_US_f_Allison" / "digits" / "5.flac")
    assert rate == 16000 and len(x) == 2 * len(native)


# ---------------------------------------------------------------- resampling


def test_real_clip_8k_to_16k_to_8k_is_close_to_the_original():
    x = clip("en_US_f_Allison", "7") / 32768
    up = resample(x, 8000, 16000)
    back = resample(up, 16000, 8000)
    assert len(up) == 2 * len(x) and len(back) == len(x)
    assert np.linalg.norm(back - x) / np.linalg.norm(x) < 0.01
    # The even samples of the upsampled clip are (nearly) the original samples.
    assert np.linalg.norm(up[::2] - x) / np.linalg.norm(x) < 0.01


@pytest.mark.parametrize("rates", [(8000, 16000), (22050, 16000), (44100, 8000)])
def test_a_sine_keeps_its_frequency(rates):
    src, dst = rates
    f = 1234.5
    t = np.arange(src) / src  # one second
    y = resample(np.sin(2 * np.pi * f * t).astype(np.float32), src, dst)
    assert abs(len(y) - dst) <= 1
    assert abs(dominant_frequency(y[200:-200], dst) - f) < 0.5
    # Amplitude is kept away from the edges (passband gain 1).
    assert abs(np.abs(y[500:-500]).max() - 1.0) < 0.01


def test_resample_tensor_and_channels():
    x = torch.from_numpy(np.stack([clip("en_US_f_Allison", "1"), clip("en_US_f_Allison", "1")]))
    y = resample(x.float() / 32768, 8000, 16000)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 2 * x.shape[1])
    assert torch.equal(y[0], y[1])
    with pytest.raises(ValueError, match="orig_rate"):
        resample(x.float(), 0, 16000)


# ---------------------------------------------------------------- crop / pad


def test_ten_second_clip_crops_start_everywhere_in_0_to_9_seconds():
    rate = 8000
    ramp = torch.arange(10 * rate, dtype=torch.float32)  # value = sample index (exact in fp32)
    batch = ramp[None].expand(1000, -1)
    crop = RandomCrop(1.0, rate)
    out, lengths = crop(
        batch, uniform(3, 0, range(1000), crop.num_uniforms), np.full(1000, 10 * rate)
    )
    assert out.shape == (1000, rate) and (lengths == rate).all()
    starts = out[:, 0].numpy()
    # Each crop is a contiguous window of the clip starting at its offset.
    assert torch.equal(out, out[:, :1] + torch.arange(rate, dtype=torch.float32))
    assert starts.min() >= 0 and starts.max() <= 9 * rate
    bins = np.bincount((starts // rate).astype(int), minlength=10)
    assert bins[:9].min() > 0, bins  # every second 0-1, ..., 8-9 holds some start
    assert bins[9] <= 1  # start = 9 s exactly is the only value in the last bin
    assert len(bins) == 10


def test_short_clip_comes_back_exactly_one_second_long():
    rate = 8000
    x = clip("en_US_f_Allison", "a")[: int(0.3 * rate)] / 32768
    assert len(x) == 2400
    for pad in ("end", "random", "center"):
        crop = RandomCrop(1.0, rate, pad)
        batch = torch.from_numpy(x).float()[None].expand(50, -1)
        out, lens = crop(batch, uniform(0, 0, range(50), 1), np.full(50, 2400))
        assert out.shape == (50, rate)
        offsets = -crop.offsets(uniform(0, 0, range(50), 1), np.full(50, 2400))
        for b in range(50):
            o = int(offsets[b])
            assert torch.equal(out[b, o : o + 2400], batch[b])
            assert out[b, :o].abs().sum() == 0 and out[b, o + 2400 :].abs().sum() == 0
        if pad == "end":
            assert (offsets == 0).all() and (lens == 2400).all()
        elif pad == "center":
            assert (offsets == 2800).all() and (lens == rate).all()
        else:
            assert len(set(offsets.tolist())) > 40 and offsets.max() <= rate - 2400


def test_crop_of_a_padded_batch_equals_crop_of_each_clip_alone():
    clips = [clip("en_US_f_Allison", d) / 32768 for d in "0123"] + [np.zeros(5), np.zeros(0)]
    batch, lengths = pad_batch(clips)
    crop = RandomCrop(0.5, 8000, "random")
    u = uniform(1, 2, range(6), 1)
    out, lens = crop(batch, u, lengths)
    for b, c in enumerate(clips):
        alone, alone_len = crop(torch.as_tensor(c, dtype=torch.float32)[None], u[b : b + 1],
                                np.array([len(c)]))  # fmt: skip
        assert torch.equal(out[b : b + 1], alone)
        assert lens[b] == alone_len[0]


def test_prepare_waveforms_zeroes_padding_and_checks_lengths():
    x = torch.ones(2, 10)
    y, lens = prepare_waveforms(x, [10, 4])
    assert y[1, 4:].abs().sum() == 0 and y[1, :4].sum() == 4 and list(lens) == [10, 4]
    with pytest.raises(ValueError, match="11"):
        prepare_waveforms(x, [11, 4])
    with pytest.raises(ValueError, match="dtype"):
        prepare_waveforms(torch.ones(2, 3, dtype=torch.uint8))
    y16, _ = prepare_waveforms(np.array([[-32768, 16384]], dtype=np.int16))
    assert torch.equal(y16, torch.tensor([[-1.0, 0.5]]))


# ---------------------------------------------------------------- gain


def test_gain_scales_by_the_sampled_decibels():
    x, lens = pad_batch([clip("en_US_f_Allison", d) / 32768 for d in "0123456789"])
    op = RandomGain(-12.0, 6.0, p=0.7)
    u = uniform(0, 0, range(10), op.num_uniforms)
    y, _ = op(x, u, lens)
    g = op.gains_db(u)
    assert ((g >= -12) & (g <= 6)).all() and (g == 0).sum() == (u[:, 0] >= 0.7).sum()
    for b in range(10):
        n = lens[b]
        ratio_db = 20 * np.log10(y[b, :n].abs().sum().item() / x[b, :n].abs().sum().item())
        assert abs(ratio_db - g[b]) < 1e-4


# ---------------------------------------------------------------- noise


@pytest.mark.parametrize("kind", ["white", "clip"])
def test_noisy_output_has_the_requested_snr(kind):
    clips = [clip("en_US_f_Allison", d) / 32768 for d in "0123456789"]
    x, lens = pad_batch(clips)
    noise = None if kind == "white" else [clip("fr_CA_f_June", "s") / 32768]
    op = AdditiveNoise((0.0, 30.0), noise=noise)
    u = uniform(5, 1, range(10), op.num_uniforms)
    y, out_lens = op(x, u, lens)
    requested = op.snrs_db(u)
    assert np.array_equal(out_lens, lens)
    for b in range(10):
        n = lens[b]
        s = x[b, :n].double().numpy()
        d = (y[b, :n].double() - x[b, :n].double()).numpy()
        measured = 10 * np.log10(np.sum(s**2) / np.sum(d**2))
        assert abs(measured - requested[b]) < 1e-3, (measured, requested[b])
        assert y[b, n:].abs().sum() == 0  # padding stays silent
    if kind == "clip":  # the added noise is the (scaled) noise clip
        d = (y[0, : lens[0]] - x[0, : lens[0]]).double().numpy()
        src = noise[0]
        start = int(u[0, 3] * len(src))
        ref = src[(start + np.arange(lens[0])) % len(src)]
        assert np.corrcoef(d, ref)[0, 1] > 0.9999


def test_white_noise_is_standard_gaussian_and_prefix_stable():
    n = white_noise(np.array([3, 4]), 50000)
    assert abs(n.mean().item()) < 0.02 and abs(n.std().item() - 1) < 0.02
    assert torch.equal(white_noise(np.array([3]), 100)[0], n[0, :100])
    assert (n[0] - n[1]).abs().mean() > 0.5


# ---------------------------------------------------------------- time shift


@pytest.mark.parametrize("mode", ["roll", "zero"])
def test_time_shift_moves_each_clip_by_its_sampled_shift(mode):
    clips = [clip("en_US_f_Allison", d) / 32768 for d in "012"]
    x, lens = pad_batch(clips)
    op = RandomTimeShift(0.2, 8000, mode)
    u = uniform(0, 0, range(3), op.num_uniforms)
    y, _ = op(x, u, lens)
    s = op.shifts(u)
    assert (np.abs(s) <= 1600).all() and (s != 0).all()
    for b, c in enumerate(clips):
        n = len(c)
        if mode == "roll":
            ref = np.roll(c, s[b])
        else:
            ref = np.zeros(n)
            if s[b] >= 0:
                ref[s[b] :] = c[: n - s[b]]
            else:
                ref[: n + s[b]] = c[-s[b] :]
        np.testing.assert_allclose(y[b, :n].numpy(), ref, rtol=0, atol=1e-7)
        assert y[b, n:].abs().sum() == 0
