"""Server audio preprocessing on real speech: decoding, mixdown, resampling, padding, refusals."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssl_serve.bundle import AudioPreprocessing, Bundle
from ssl_serve.errors import BundleError, InvalidInputError
from ssl_serve.preprocess import (
    audio_batches,
    audio_feeds,
    decode_audio,
    pad_audio,
    preprocess_audio,
    preprocess_raw_audio,
    warm_up_feeds,
)
from ssl_serve.v1.embedding_pb2 import Input, RawAudio, Tensor

PREP = AudioPreprocessing(
    sample_rate=16000, max_seconds=30.0, min_samples=400, samples_per_frame=320
)
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
ASTERISK = Path("/usr/share/asterisk/sounds")


def _asterisk_digit(digit: str) -> Path:
    """An 8 kHz Asterisk digit prompt: Debian's WAV, else the FLAC ssl-data ships."""
    roots = [ASTERISK]
    spec = importlib.util.find_spec("ssl_data")
    if spec is not None and spec.submodule_search_locations:
        roots.append(Path(next(iter(spec.submodule_search_locations))) / "samples" / "asterisk")
    for root in roots:
        for ext in (".wav", ".flac"):
            path = root / "en_US_f_Allison" / "digits" / f"{digit}{ext}"
            if path.is_file():
                return path
    pytest.fail("no Asterisk recording: install asterisk-core-sounds-en-wav or ssl-data")


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    """A real utterance as int16 PCM and its rate: LibriVox (16 kHz), else an Asterisk prompt."""
    files = sorted(LIBRIVOX.glob("*.wav"))
    path = files[0] if files else _asterisk_digit("7")
    pcm, rate = sf.read(path, dtype="int16")
    assert pcm.ndim == 1 and len(pcm) > rate // 2
    return pcm, int(rate)


def _encode(samples: np.ndarray, rate: int, fmt: str, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _prep(rate: int) -> AudioPreprocessing:
    return AudioPreprocessing(
        sample_rate=rate, max_seconds=30.0, min_samples=400, samples_per_frame=320
    )


def test_wav_and_flac_of_the_same_samples_decode_identically(
    speech: tuple[np.ndarray, int],
) -> None:
    pcm, rate = speech
    wav = preprocess_audio(_encode(pcm, rate, "WAV"), _prep(rate))
    flac = preprocess_audio(_encode(pcm, rate, "FLAC"), _prep(rate))
    np.testing.assert_array_equal(wav, flac)
    # 16-bit PCM is scaled by 1/32768, and no resampling happens at the model's own rate.
    np.testing.assert_array_equal(wav, pcm.astype(np.float32) / 32768)
    assert wav.dtype == np.float32


def test_raw_audio_equals_the_float_wav_of_the_same_samples(
    speech: tuple[np.ndarray, int],
) -> None:
    pcm, rate = speech
    x = pcm.astype(np.float32) / 32768
    raw = preprocess_raw_audio(x.astype("<f4").tobytes(), float(rate), _prep(rate))
    wav = preprocess_audio(_encode(x, rate, "WAV", "FLOAT"), _prep(rate))
    np.testing.assert_array_equal(raw, x)
    np.testing.assert_array_equal(wav, x)


def test_stereo_is_mixed_down_to_the_mean_of_its_channels(speech: tuple[np.ndarray, int]) -> None:
    pcm, rate = speech
    x = pcm.astype(np.float32) / 32768
    stereo = np.stack([x, 0.5 * x], axis=1)
    mono = preprocess_audio(_encode(stereo, rate, "WAV", "FLOAT"), _prep(rate))
    np.testing.assert_allclose(mono, 0.75 * x, atol=1e-7)


@pytest.mark.parametrize("source_rate", [8000, 44100, 22050.5])
def test_resampling_keeps_a_tone_in_band(source_rate: float) -> None:
    # A 440 Hz tone sampled at source_rate, resampled server-side to 16 kHz, is the same tone
    # sampled at 16 kHz (away from the clip's ends, where the filter sees the edge).
    seconds = 1.0
    t = np.arange(int(seconds * source_rate)) / source_rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = preprocess_raw_audio(tone.tobytes(), source_rate, PREP)
    assert len(out) == round(len(tone) * 16000 / source_rate)
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(out)) / 16000)
    inner = slice(800, len(out) - 800)
    # Measured: 2.4e-7 (8 kHz), 4.0e-7 (44.1 kHz), 4.2e-7 (22050.5 Hz).
    assert np.abs(out[inner] - expected[inner]).max() < 1e-5


def test_real_8khz_recording_is_upsampled_with_its_duration() -> None:
    path = _asterisk_digit("3")
    data = path.read_bytes()
    samples, rate = decode_audio(data)
    assert rate == 8000
    out = preprocess_audio(data, PREP)
    assert len(out) == 2 * len(samples)
    # Band-limited upsampling by 2 keeps the original samples at even positions (to the
    # resampler's ripple; measured 0.2% of the peak on digits/3), not a copy of them.
    assert np.abs(out[::2] - samples).max() < 0.005 * np.abs(samples).max()


def test_pad_audio_right_pads_with_zeros_and_marks_real_samples() -> None:
    a, b = np.arange(1, 6, dtype=np.float32), np.arange(1, 3, dtype=np.float32)
    feeds = pad_audio([a, b])
    np.testing.assert_array_equal(feeds["input_values"], [[1, 2, 3, 4, 5], [1, 2, 0, 0, 0]])
    np.testing.assert_array_equal(feeds["attention_mask"], [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    assert feeds["input_values"].dtype == np.float32
    assert feeds["attention_mask"].dtype == np.int64


def test_audio_batches_cover_every_clip_once_padded_to_their_own_longest() -> None:
    clips = [np.ones(n, np.float32) for n in (16000, 800, 15000, 900, 64000)]
    batches = audio_batches(clips, max_batch_size=3, max_batch_samples=1 << 30)
    seen = np.concatenate([idx for idx, _ in batches])
    assert sorted(seen.tolist()) == list(range(len(clips)))
    for idx, feeds in batches:
        assert feeds["input_values"].shape == (len(idx), max(len(clips[i]) for i in idx))
        assert feeds["attention_mask"].sum(axis=1).tolist() == [len(clips[i]) for i in idx]
    # Similar lengths share a batch; a third clip would make more than 25% of it padding.
    assert [sorted(i.tolist()) for i, _ in batches] == [[1, 3], [0, 2], [4]]


def _audio_bundle() -> Bundle:
    return Bundle.from_dict(
        {
            "format_version": 1,
            "name": "speech",
            "version": "1",
            "modality": "audio",
            "inputs": [
                {"name": "input_values", "dtype": "float32", "shape": ["batch", "samples"]},
                {"name": "attention_mask", "dtype": "int64", "shape": ["batch", "samples"]},
            ],
            "outputs": [{"name": "embedding", "dtype": "float32", "shape": ["batch", 32]}],
            "embedding_dim": 32,
            "normalized": True,
            "preprocessing": PREP.to_dict(),
        }
    )


def test_audio_bundle_json_round_trips_and_names_bad_keys() -> None:
    bundle = _audio_bundle()
    assert bundle.preprocessing == PREP and PREP.max_samples == 480000
    assert Bundle.from_dict(bundle.to_dict()) == bundle
    data = bundle.to_dict()
    data["preprocessing"]["sample_rate"] = 0
    with pytest.raises(BundleError, match="preprocessing.sample_rate"):
        Bundle.from_dict(data)
    data = bundle.to_dict()
    data["inputs"][1]["dtype"] = "float32"
    with pytest.raises(BundleError, match="'attention_mask' int64"):
        Bundle.from_dict(data)


def test_audio_feeds_take_every_audio_input_kind_in_order(speech: tuple[np.ndarray, int]) -> None:
    pcm, rate = speech
    x = pcm.astype(np.float32) / 32768
    short = x[: rate // 2]
    inputs = [
        Input(audio=_encode(pcm, rate, "FLAC")),
        Input(raw_audio=RawAudio(samples=short.tobytes(), sample_rate_hz=rate)),
        Input(tensor=Tensor(dtype="float32", shape=[1000], data=np.ones(1000, "<f4").tobytes())),
    ]
    feeds = audio_feeds(inputs, _audio_bundle())
    values, mask = feeds["input_values"], feeds["attention_mask"]
    n = len(preprocess_audio(_encode(pcm, rate, "FLAC"), PREP))
    assert values.shape == mask.shape == (3, n)
    assert mask.sum(axis=1).tolist() == [n, len(short) * 16000 // rate, 1000]
    np.testing.assert_array_equal(values[2, :1000], 1.0)
    assert not values[2, 1000:].any()
    with pytest.raises(InvalidInputError, match="input 1: an audio model takes audio"):
        audio_feeds([inputs[0], Input(text="hello")], _audio_bundle())


def test_warm_up_feeds_hold_a_padded_row() -> None:
    feeds = warm_up_feeds(PREP)
    assert feeds["attention_mask"].sum(axis=1).tolist() == [8000, 400]


def _nan_wav() -> bytes:
    x = np.zeros(8000, np.float32)
    x[1234] = np.nan
    return _encode(x, 16000, "WAV", "FLOAT")


def _ogg() -> bytes:
    t = np.arange(16000) / 16000
    return _encode((0.1 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000, "OGG", "VORBIS")


BAD_ENCODED = [
    (b"", r"audio is empty \(0 bytes\); send WAV or FLAC"),
    (b"this is not audio at all" * 10, r"cannot decode audio \(240 bytes\): .*send the bytes"),
    (_encode(np.zeros(0, np.int16), 16000, "WAV"), "audio has no samples"),
    (_nan_wav(), "1 NaN or infinite samples .the first at sample 1234"),
    (_encode(np.zeros(31 * 8000, np.int16), 8000, "WAV"), "31.00 s long; .* at most 30 s"),
    (_encode(np.zeros(24_000, np.int16), 8000, "FLAC"), None),  # 3 s: fine
    (_encode(np.zeros(100, np.int16), 8000, "WAV"), "12.5 ms long .* at least 400 samples"),
]


@pytest.mark.parametrize(
    ("data", "message"),
    BAD_ENCODED,
    ids=["empty", "garbage", "no-samples", "nan", "too-long", "3s-ok", "too-short"],
)
def test_bad_encoded_audio_is_invalid_input_saying_what_to_fix(
    data: bytes, message: str | None
) -> None:
    if message is None:
        assert len(preprocess_audio(data, PREP, index=3)) == 48000
        return
    with pytest.raises(InvalidInputError, match=message) as info:
        preprocess_audio(data, PREP, index=3)
    assert str(info.value).startswith("input 3: ")


def test_truncated_and_non_wav_flac_files_are_refused(speech: tuple[np.ndarray, int]) -> None:
    pcm, rate = speech
    with pytest.raises(InvalidInputError, match="cannot decode audio"):
        preprocess_audio(_encode(pcm, rate, "FLAC")[:40], PREP)
    try:
        ogg = _ogg()
    except (sf.LibsndfileError, ValueError, TypeError):
        pytest.skip("this libsndfile cannot write OGG/Vorbis")
    with pytest.raises(InvalidInputError, match="format OGG .* send WAV or FLAC"):
        preprocess_audio(ogg, PREP)


@pytest.mark.parametrize(
    ("samples", "rate", "message"),
    [
        (np.zeros(0, "<f4").tobytes(), 16000, "no samples"),
        (np.zeros(8000, "<f4").tobytes(), 0.0, "sample rate is 0 Hz; .* > 0"),
        (np.zeros(8000, "<f4").tobytes(), -8000.0, "sample rate is -8000 Hz"),
        (np.zeros(8000, "<f4").tobytes(), float("nan"), "sample rate is nan Hz"),
        (np.zeros(8000, "<f4").tobytes(), float("inf"), "sample rate is inf Hz"),
        (np.zeros(8000, "<f4").tobytes(), 2e6, "<= 768000"),
        (b"\0" * 4001, 16000, "4001 bytes, not a multiple of 4"),
        (np.array([0.1, np.inf, -np.inf] * 200, "<f4").tobytes(), 16000, "400 NaN or infinite"),
        (np.zeros(31 * 16000 + 1, "<f4").tobytes(), 16000, "31.00 s long"),
        (np.zeros(399, "<f4").tobytes(), 16000, "at least 400 samples .25.0 ms"),
        (np.zeros(150, "<f4").tobytes(), 8000, "18.8 ms long .300 samples at 16000 Hz.; .*"),
    ],
)
def test_bad_raw_audio_is_invalid_input_saying_what_to_fix(
    samples: bytes, rate: float, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        preprocess_raw_audio(samples, rate, PREP, index=0)
    assert str(info.value).startswith("input 0: ")


def test_bad_tensor_inputs_to_an_audio_model() -> None:
    bundle = _audio_bundle()
    cases = [
        (Tensor(dtype="float64", shape=[1000], data=b"\0" * 8000), "float64 \\[1000\\]"),
        (Tensor(dtype="float32", shape=[1, 1000], data=b"\0" * 4000), "one float32 \\[samples\\]"),
        (Tensor(dtype="float32", shape=[1000], data=b"\0" * 400), "400 bytes"),
        (Tensor(dtype="float32", shape=[100], data=b"\0" * 400), "at least 400 samples"),
    ]
    for tensor, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            audio_feeds([Input(tensor=tensor)], bundle)
