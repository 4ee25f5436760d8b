import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ssl_data.audio import (
    AudioViewDataset,
    ContrastiveAudioView,
    LogMelSpecAugmentView,
    LogMelSpectrogram,
    SpecAugment,
    Wav2Vec2MaskView,
    conv_output_lengths,
    pad_batch,
)
from ssl_data.datasets.asterisk import AsteriskSounds, bundled_sample_root
from ssl_data.views import collate_views

RATE = 8000


@pytest.fixture(scope="module")
def digits():
    """The 20 real digit recordings of the bundled sample (two speakers), 8 kHz."""
    return AsteriskSounds("digits", root=bundled_sample_root())


@pytest.fixture(scope="module")
def clips(digits):
    return [digits[i][0] for i in range(len(digits))]


GENERATORS = {
    "contrastive": lambda: ContrastiveAudioView(sample_rate=RATE, crop_seconds=0.5, gain_p=0.8,
                                                noise_p=0.8, shift_p=0.8, seed=3),
    "contrastive-logmel": lambda: ContrastiveAudioView(
        sample_rate=RATE, crop_seconds=1.2, pad="random",
        features=LogMelSpectrogram(sample_rate=RATE, n_fft=256, hop_length=80, n_mels=32)),
    "specaugment": lambda: LogMelSpecAugmentView(
        sample_rate=RATE, crop_seconds=1.0,
        features=LogMelSpectrogram(sample_rate=RATE, n_fft=256, hop_length=80, n_mels=32),
        spec_augment=SpecAugment(freq_mask_param=8, time_mask_param=20)),
    "wav2vec2": lambda: Wav2Vec2MaskView(sample_rate=RATE, crop_seconds=0.3, mask_length=4),
}  # fmt: skip


@pytest.mark.parametrize("name", list(GENERATORS))
def test_views_are_deterministic_and_change_with_epoch_and_view(name, clips):
    gen = GENERATORS[name]()
    idx = np.arange(len(clips))
    first = gen(clips, idx, 0)
    again = gen(clips, idx, 0)
    later = gen(clips, idx, 1)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], later[0])
    per_sample = (first[0] - later[0]).flatten(1).abs().amax(1)
    assert (per_sample > 0).float().mean() > 0.9  # nearly every clip gets new parameters
    if name != "wav2vec2":
        assert not torch.equal(first[0], first[1])  # two independent views


@pytest.mark.parametrize("name", list(GENERATORS))
def test_padded_batch_and_dataloader_workers_give_the_batched_views(name, clips, digits):
    gen = GENERATORS[name]()
    idx = np.arange(len(clips))
    batched = gen(clips, idx, 2)
    padded, lengths = pad_batch(clips)
    from_padded = gen(padded, idx, 2, lengths=lengths)
    loader = DataLoader(AudioViewDataset(digits, gen, epoch=2), batch_size=6, num_workers=2,
                        collate_fn=collate_views)  # fmt: skip
    per_sample = [torch.cat(t) for t in zip(*list(loader))]
    for a, b, c in zip(batched, from_padded, per_sample):
        assert a.shape == b.shape == c.shape
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(a.numpy(), c.numpy(), rtol=0, atol=1e-6)


def test_contrastive_views_are_crops_of_the_clip(clips):
    gen = ContrastiveAudioView(sample_rate=RATE, crop_seconds=0.25, gain_p=0, noise_p=0,
                               shift_p=0)  # fmt: skip
    a, b = gen(clips, np.arange(len(clips)), 0)
    assert a.shape == (len(clips), 2000)
    for i, c in enumerate(clips[::4]):
        for v in (a[4 * i], b[4 * i]):  # each view is a window of the clip, found at some offset
            windows = c.unfold(0, 2000, 1)
            assert (windows == v).all(1).any()


def test_wav2vec2_view_masks_only_real_frames(clips):
    gen = Wav2Vec2MaskView(sample_rate=RATE, crop_seconds=1.0)
    short = [c[: 400 + 37 * k] for k, c in enumerate(clips)]
    wave, lengths, mask = gen(short, np.arange(len(short)), 0)
    frames = conv_output_lengths(lengths.numpy())
    assert wave.shape == (len(short), RATE) and mask.shape == (len(short), 24)
    assert list(lengths) == [len(c) for c in short]
    positions = np.arange(24)[None, :]
    assert not (mask.numpy() & (positions >= frames[:, None])).any()
    assert mask.any(1).all()  # min_masks=2: every clip with a frame has a masked span


def test_audio_view_dataset_appends_labels_and_checks_range(digits):
    data = AudioViewDataset(digits, GENERATORS["wav2vec2"](), return_labels=True)
    assert len(data) == 20
    views = data[13]
    assert len(views) == 4 and views[-1].tolist() == [3] and views[0].shape == (1, 2400)
    with pytest.raises(IndexError, match="20"):
        data[20]
