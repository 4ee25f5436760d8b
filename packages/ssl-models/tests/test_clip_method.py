"""CLIP method: a speech encoder and a text encoder (with poolings) trained on pairs; loss value,
embed by modality, temperature clamp after a step, encoder built from a config."""

import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ssl_models.cross_modal import CLIP
from ssl_models.losses.clip import CLIPLoss
from ssl_models.speech import SpeechEncoder

DIGITS = Path("/usr/share/asterisk/sounds/en_US_f_Allison/digits")
WORDS = ["zero", "one", "two", "three"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class MeanPooledText(nn.Module):
    """Character embeddings mean-pooled over the real (attention-mask) positions."""

    def __init__(self, vocab=128, dim=12):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.output_dim = dim

    def forward(self, input_ids, attention_mask):
        m = attention_mask.float()[..., None]
        return (self.embed(input_ids) * m).sum(1) / m.sum(1)


def text_batch(words):
    width = max(map(len, words))
    ids = torch.zeros(len(words), width, dtype=torch.long)
    mask = torch.zeros(len(words), width, dtype=torch.long)
    for i, w in enumerate(words):
        ids[i, : len(w)] = torch.tensor([ord(c) for c in w])
        mask[i, : len(w)] = 1
    return ids, mask


def speech_batch():
    """Spoken digits 0-3 (one speaker, 8 kHz), normalised per clip, zero-padded."""
    if DIGITS.is_dir():
        clips = []
        for d in range(4):
            with wave.open(str(DIGITS / f"{d}.wav")) as f:
                clips.append(np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16) / 3e4)
    else:  # keeps the test meaningful without the Debian package: distinct tones
        t = np.arange(4000) / 8000
        clips = [np.sin(2 * np.pi * (200 + 100 * d) * t[: 3000 + 300 * d]) for d in range(4)]
    clips = [(c - c.mean()) / (c.std() + 1e-7) for c in clips]
    lengths = torch.tensor([len(c) for c in clips])
    x = torch.zeros(4, int(lengths.max()))
    for i, c in enumerate(clips):
        x[i, : len(c)] = torch.from_numpy(c.astype(np.float32))
    return x, lengths


def make_clip(seed=0):
    torch.manual_seed(seed)
    speech = SpeechEncoder(
        hidden_size=16,
        num_layers=1,
        num_heads=2,
        conv_dim=(8,) * 7,
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        dropout=0.0,
    )
    return CLIP(speech, MeanPooledText(), projection_dim=8, init_temperature=0.1)


def test_loss_is_clip_loss_of_projected_pairs_and_training_lowers_it():
    model = make_clip()
    x, lengths = speech_batch()
    ids, mask = text_batch(WORDS)
    views = [x, lengths, ids, mask]
    loss = model(views)
    with torch.no_grad():
        z_a = model.projection(model.encoder(x, lengths))
        z_b = model.projection_b(model.encoder_b(ids, mask))
        expected = CLIPLoss(init_temperature=0.1)(z_a, z_b)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = loss.item()
    for step in range(1, 16):
        opt.zero_grad()
        model(views).backward()
        opt.step()
        model.after_optimizer_step(step, 15)
    assert model(views).item() < first - 0.3  # the 4 spoken digits get matched to their words
    assert 0.0 <= model.criterion.logit_scale.item() <= math.log(100.0)


def test_embed_by_modality():
    model = make_clip().eval()
    x, lengths = speech_batch()
    ids, mask = text_batch(WORDS)
    with torch.no_grad():
        speech = model.embed("speech", x, lengths)
        assert speech.shape == (4, 16)
        torch.testing.assert_close(model.embed(x, lengths), speech)  # the trainer's call
        text = model.embed("text", ids, mask, projected=True)
        assert text.shape == (4, 8)
        torch.testing.assert_close(text.norm(dim=1), torch.ones(4))
        # a clip alone equals itself inside the padded batch
        alone = model.embed("speech", x[1:2, : int(lengths[1])])
        assert (alone[0] - speech[1]).abs().max().item() <= 1e-5
    with pytest.raises(ValueError, match="unknown modality 'image'"):
        model.embed("image", x)
    with pytest.raises(ValueError, match="takes 1 to 2 inputs, got 3"):
        model.embed("text", ids, mask, mask)


def test_after_step_clamps_the_temperature_and_encoder_from_config():
    model = make_clip()
    with torch.no_grad():
        model.criterion.logit_scale.fill_(7.0)
    model.after_optimizer_step(1, 10)
    assert model.criterion.logit_scale.item() == pytest.approx(math.log(100.0))
    torch.manual_seed(0)
    image_text = CLIP(
        MeanPooledText(),
        {"name": "small_cnn", "in_channels": 1},
        modalities=("text", "image"),
        num_inputs=(2, 1),
    )
    assert image_text.num_views == 3 and image_text.encoder_b.output_dim == 128
    ids, mask = text_batch(WORDS)
    loss = image_text([ids, mask, torch.randn(4, 1, 28, 28)])
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="needs 3 views, got 2"):
        image_text([ids, mask])
    with pytest.raises(ValueError, match="distinct"):
        CLIP(MeanPooledText(), MeanPooledText(), modalities=("text", "text"))
