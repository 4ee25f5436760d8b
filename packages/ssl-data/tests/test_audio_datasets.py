import logging
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from ssl_data import CorruptFileError, DatasetNotFoundError, SslDataError
from ssl_data.datasets.asterisk import DEBIAN_ROOT as ASTERISK_DEBIAN
from ssl_data.datasets.asterisk import AsteriskSounds, asterisk_root, bundled_sample_root
from ssl_data.datasets.audio_folder import AudioFiles, AudioFolder
from ssl_data.datasets.librivox import DEBIAN_ROOT as LIBRIVOX_DEBIAN
from ssl_data.datasets.librivox import LibriVoxUtterances, read_transcription
from ssl_data.datasets.spoken_digits import DIGIT_WORDS, SpokenDigits, render_spoken_digits

SAMPLE = bundled_sample_root()
HAS_ASTERISK = (ASTERISK_DEBIAN / "en_US_f_Allison" / "digits" / "0.wav").is_file() and (
    ASTERISK_DEBIAN / "fr_CA_f_June" / "digits" / "0.wav"
).is_file()
HAS_LIBRIVOX = (LIBRIVOX_DEBIAN / "transcription").is_file()
HAS_ESPEAK = shutil.which("espeak-ng") is not None


# ---------------------------------------------------------------- Asterisk


def test_bundled_asterisk_sample_counts_and_labels():
    digits = AsteriskSounds("digits", root=SAMPLE)
    assert len(digits) == 20 and digits.classes == tuple("0123456789")
    assert np.array_equal(digits.labels, np.tile(np.arange(10), 2))
    assert np.array_equal(np.bincount(digits.speaker_ids), [10, 10])
    assert digits.corrupt.count == 0 and (digits.native_rates == 8000).all()
    assert [p.name for p in digits.paths[:3]] == ["0.flac", "1.flac", "2.flac"]
    assert digits.paths[12].parent.parent.name == "fr_CA_f_June"
    clip, label = digits[17]
    assert label == 7 and clip.dtype == torch.float32
    assert clip.ndim == 1 and 0.4 < len(clip) / 8000 < 1.0
    letters = AsteriskSounds("letters", speakers=["en_US_f_Allison"], root=SAMPLE,
                             sample_rate=16000)  # fmt: skip
    assert len(letters) == 26 and letters.classes[25] == "z"
    assert len(letters[0][0]) == 2 * letters.num_frames[0]  # resampled to 16 kHz on access
    with pytest.raises(DatasetNotFoundError, match="phonetic"):
        AsteriskSounds("phonetic", root=SAMPLE)
    with pytest.raises(ValueError, match="speakers"):
        AsteriskSounds("digits", speakers=["de_DE"], root=SAMPLE)


def test_asterisk_root_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("SSL_DATA_ASTERISK", str(SAMPLE))
    assert asterisk_root() == SAMPLE
    monkeypatch.setenv("SSL_DATA_ASTERISK", str(tmp_path))  # empty: falls through
    assert asterisk_root() in (ASTERISK_DEBIAN, SAMPLE)


@pytest.mark.skipif(not HAS_ASTERISK, reason="Debian asterisk-core-sounds-{en,fr}-wav missing")
def test_debian_asterisk_counts_and_the_sample_is_a_lossless_copy():
    assert len(AsteriskSounds("digits", root=ASTERISK_DEBIAN)) == 20
    phonetic = AsteriskSounds("phonetic", root=ASTERISK_DEBIAN)
    assert len(phonetic) == 52 and phonetic.corrupt.count == 0
    everything = AsteriskSounds("all", root=ASTERISK_DEBIAN)
    assert len(everything) == 1129 and len(everything.classes) == 570
    assert np.array_equal(np.bincount(everything.speaker_ids), [568, 561])
    assert "digits/7" in everything.classes and "hello-world" in everything.classes
    k = everything.classes.index("digits/7")
    assert (everything.labels == k).sum() == 2  # both speakers say it
    for flac in sorted(SAMPLE.glob("*/*/*.flac")):
        wav = ASTERISK_DEBIAN / flac.relative_to(SAMPLE).with_suffix(".wav")
        assert np.array_equal(sf.read(flac, dtype="int16")[0], sf.read(wav, dtype="int16")[0])


# ---------------------------------------------------------------- audio folder + corrupt policy


def make_folder(tmp_path):
    """Two classes of real clips, plus one corrupt file in class 'seven'."""
    for name, digit in (("five", "5"), ("seven", "7")):
        (tmp_path / name / "deeper").mkdir(parents=True)
        for speaker in ("en_US_f_Allison", "fr_CA_f_June"):
            data, rate = sf.read(SAMPLE / speaker / "digits" / f"{digit}.flac", dtype="int16")
            sf.write(tmp_path / name / f"{speaker}.wav", data, rate)
        sf.write(tmp_path / name / "deeper" / "ogg-copy.ogg", data, rate, format="OGG")
    (tmp_path / "seven" / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    (tmp_path / "seven" / "notes.txt").write_text("not audio")
    return tmp_path


def test_audio_folder_labels_by_subfolder_and_skips_and_counts_corrupt(tmp_path, caplog):
    root = make_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ssl_data"):
        data = AudioFolder(root, sample_rate=16000)
    assert data.classes == ("five", "seven") and len(data) == 6
    assert list(data.labels) == [0, 0, 0, 1, 1, 1]
    assert data.corrupt.count == 1 and data.corrupt.skipped[0][0].endswith("broken.wav")
    assert "broken.wav" in caplog.text
    clip, label = data[4]
    assert label == 1 and len(clip) == 2 * data.num_frames[4]
    unlabelled = AudioFolder(root, labelled=False, sample_rate=None)
    assert len(unlabelled) == 6 and (unlabelled.labels == -1).all()
    with pytest.raises(CorruptFileError, match="broken.wav"):
        AudioFolder(root, on_corrupt="raise")
    with pytest.raises(DatasetNotFoundError):
        AudioFolder(tmp_path / "nothing")


def test_audio_files_verify_decode_and_missing_files(tmp_path):
    good = SAMPLE / "en_US_f_Allison" / "digits" / "1.flac"
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(good.read_bytes()[:200])  # header intact, audio cut off
    missing = tmp_path / "missing.wav"
    header = AudioFiles([good, truncated, missing], [1, 2, 3])
    assert len(header) == 2 and [s[0] for s in header.corrupt.skipped] == [str(missing)]
    assert list(header.labels) == [1, 2]
    # The header was fine, the body is not: item 1 is replaced by the next readable clip (0),
    # counted, and the size stays 2.
    clip, label = header[1]
    assert label == 1 and torch.equal(clip, header[0][0]) and len(header) == 2
    assert [s[0] for s in header.corrupt.skipped] == [str(missing), str(truncated)]
    strict = AudioFiles([good, truncated], [1, 2], on_corrupt="raise")
    with pytest.raises(CorruptFileError, match="truncated.flac"):
        strict[1]
    full = AudioFiles([good, truncated, missing], [1, 2, 3], verify="full")
    assert len(full) == 1 and full.paths == [good] and list(full.labels) == [1]
    assert [s[0] for s in full.corrupt.skipped] == [str(truncated), str(missing)]
    listed = AudioFiles([good, truncated], verify="none")
    assert len(listed) == 2 and np.isnan(listed.durations).all()
    with pytest.raises(DatasetNotFoundError, match="no readable"):
        AudioFiles([missing])


# ---------------------------------------------------------------- LibriVox


def test_read_transcription_parses_sphinx_format(tmp_path):
    f = tmp_path / "transcription"
    f.write_text("<s> he was not an ill disposed young man </s> (utt-0880)\n\nfive five (004)\n")
    assert read_transcription(f) == {"utt-0880": "he was not an ill disposed young man",
                                     "004": "five five"}  # fmt: skip
    f.write_text("no id here\n")
    with pytest.raises(CorruptFileError, match="line 1"):
        read_transcription(f)


@pytest.mark.skipif(not HAS_LIBRIVOX, reason="Debian pocketsphinx-testdata missing")
def test_librivox_utterances_have_their_transcripts():
    data = LibriVoxUtterances()
    assert len(data) == 5 and data.corrupt.count == 0 and data.untranscribed == []
    assert data.utterance_ids[1] == "sense_and_sensibility_01_austen_64kb-0880"
    clip, text = data[1]
    assert text == "he was not an ill disposed young man"
    assert len(clip) == 47840 and (data.native_rates == 16000).all()  # 2.99 s at 16 kHz
    np.testing.assert_allclose(data.durations, [7.1, 2.99, 5.3, 6.05, 3.29])


def test_librivox_missing_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_DATA_LIBRIVOX", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="pocketsphinx-testdata"):
        LibriVoxUtterances()


# ---------------------------------------------------------------- espeak-ng spoken digits


@pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng missing")
def test_spoken_digits_render_deterministically_with_labels(tmp_path):
    voices = ("en-us+f3", "en-gb")
    data = SpokenDigits(voices, cache_dir=tmp_path / "a")
    assert len(data) == 20 and data.classes == DIGIT_WORDS
    assert list(data.labels) == list(range(10)) * 2 and list(data.voice_ids) == [0] * 10 + [1] * 10
    assert (data.native_rates == 22050).all() and data.corrupt.count == 0
    again = render_spoken_digits(tmp_path / "b", voices[1:])
    for p, q in zip(data.paths[10:], again, strict=True):
        assert p.read_bytes() == q.read_bytes()  # same synthesiser, same bytes
    clip, label = data[7]
    assert label == 7 and 0.3 < len(clip) / 16000 < 1.2
    with pytest.raises(SslDataError, match="bogus"):
        render_spoken_digits(tmp_path / "c", ["bogus"])


def test_spoken_digits_without_espeak_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="espeak-ng"):
        SpokenDigits(cache_dir=tmp_path / "cache")
