"""SpeechEncoder: frame counts, padding-invariant utterance embeddings, input checks."""

import pytest
import torch

from ssl_models.speech import SpeechEncoder, mean_pool_frames


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_encoder(seed=0, **kwargs):
    torch.manual_seed(seed)
    return SpeechEncoder(
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        dropout=0.0,
        **kwargs,
    )


def test_num_frames_matches_transformers_and_receptive_field():
    enc = small_encoder()
    lengths = torch.tensor([400, 401, 719, 720, 5000, 16000, 80000])
    expected = enc.wav2vec2._get_feat_extract_output_lengths(lengths)
    assert enc.num_frames(lengths).tolist() == expected.tolist()
    # 20 ms hop and 25 ms window at 16 kHz: frames = floor((L - 400) / 320) + 1
    assert enc.num_frames(lengths).tolist() == [(n - 400) // 320 + 1 for n in lengths.tolist()]
    assert (enc.samples_per_frame, enc.receptive_field) == (320, 400)
    assert enc.num_frames(torch.tensor([399])).tolist() == [0]


def test_utterance_embedding_alone_equals_inside_padded_batch():
    enc = small_encoder().eval()
    g = torch.Generator().manual_seed(1)
    long, short = torch.randn(16000, generator=g), torch.randn(5000, generator=g)
    batch = torch.randn(2, 16000, generator=g)  # padding filled with noise, not zeros
    batch[0] = long
    batch[1, :5000] = short
    lengths = torch.tensor([16000, 5000])
    with torch.no_grad():
        pooled = enc(batch, lengths)
        alone_short = enc(short[None])
        alone_long = enc(long[None])
        frames = enc.frames(batch, lengths)
    assert pooled.shape == (2, 32)
    assert (pooled[1] - alone_short[0]).abs().max().item() <= 1e-5
    assert (pooled[0] - alone_long[0]).abs().max().item() <= 1e-5
    # the padded frames of the short clip are excluded, not just small: including them differs
    assert frames.frame_mask.sum(1).tolist() == [49, 15]
    naive = frames.hidden[1].mean(0)
    assert (naive - alone_short[0]).abs().max().item() > 1e-3


def test_group_norm_is_refused():
    with pytest.raises(ValueError, match="group"):
        small_encoder(feat_extract_norm="group")


def test_mean_pool_frames_values_and_nonfinite_padding():
    frames = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    frames[1, 2] = float("nan")  # padding may hold anything
    mask = torch.tensor([[True, True, True], [True, True, False]])
    out = mean_pool_frames(frames, mask)
    expected = torch.tensor([[2.0, 3.0], [7.0, 8.0]])
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="no real frame"):
        mean_pool_frames(frames, torch.zeros(2, 3, dtype=torch.bool))


def test_bad_inputs_name_the_offending_value():
    enc = small_encoder()
    x = torch.zeros(2, 1000)
    with pytest.raises(ValueError, match=r"lengths\[1\]=300"):
        enc.frames(x, torch.tensor([1000, 300]))
    with pytest.raises(ValueError, match=r"lengths\[0\]=2000"):
        enc.frames(x, torch.tensor([2000, 500]))
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        enc.frames(x, torch.tensor([1000, 500]), torch.zeros(2, 3, dtype=torch.bool))
    mask = torch.zeros(2, 2, dtype=torch.bool)
    mask[1, 1] = True  # clip 1 (500 samples) has 1 real frame of 2
    with pytest.raises(ValueError, match=r"mask_time_indices\[1\] masks padded frames"):
        enc.frames(x, torch.tensor([1000, 500]), mask)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        enc.frames(torch.zeros(1000))
