"""HuBERT: k-means targets (fit, assign, align to frames), cosine cluster logits and the masked
prediction loss against references, the method on a padded batch."""

import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_models.speech import (
    SpeechEncoder,
    align_labels_to_frames,
    assign_clusters,
    cluster_logits,
    fit_cluster_centers,
    masked_prediction_loss,
)
from ssl_models.speech.hubert import HuBERT

DIGITS = Path("/usr/share/asterisk/sounds/en_US_f_Allison/digits")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _log_spectrum_frames(path):
    """Log power spectra of 25 ms frames every 10 ms of a real recording (8 kHz PCM16)."""
    with wave.open(str(path)) as f:
        rate = f.getframerate()
        x = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16) / 32768.0
    win, hop = rate * 25 // 1000, rate * 10 // 1000
    n = 1 + (len(x) - win) // hop
    frames = np.stack([x[i * hop : i * hop + win] for i in range(n)]) * np.hanning(win)
    return np.log(np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-8)[:, :40]


@pytest.mark.skipif(not DIGITS.is_dir(), reason="asterisk-core-sounds-en-wav not installed")
def test_kmeans_on_real_speech_frames():
    feats = np.concatenate([_log_spectrum_frames(DIGITS / f"{d}.wav") for d in range(4)])
    assert feats.shape[0] > 200
    centers = fit_cluster_centers(feats, 8, seed=0, n_init=3)
    assert centers.shape == (8, 40) and centers.dtype == np.float32
    np.testing.assert_array_equal(centers, fit_cluster_centers(feats, 8, seed=0, n_init=3))
    labels = assign_clusters(feats, centers)
    # nearest centre by brute force
    d = ((feats[:, None, :] - centers[None].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_array_equal(labels, d.argmin(1))
    assert len(np.unique(labels)) == 8
    # k-means fits: its inertia beats 8 frames picked as centres
    inertia = d.min(1).sum()
    picked = feats[:: len(feats) // 8][:8]
    assert inertia < ((feats[:, None] - picked[None]) ** 2).sum(-1).min(1).sum()
    with pytest.raises(ValueError, match="num_clusters"):
        fit_cluster_centers(feats[:5], 8)
    with pytest.raises(ValueError, match="NaN"):
        fit_cluster_centers(np.full((10, 2), np.nan), 2)


def test_labels_align_to_frame_centres():
    labels = np.arange(100) + 1000  # label i == 1000 + its own index
    # 16 kHz: encoder frame t centred at 320 t + 200; 10 ms labels (hop 160) centred at 160 i
    out = align_labels_to_frames(labels, 49)
    assert out.tolist() == [1000 + round((320 * t + 200) / 160) for t in range(49)]
    assert out[:3].tolist() == [1001, 1003, 1005]
    # labels without centre padding (window 400: centre 200) line up exactly: label 2t
    assert align_labels_to_frames(labels, 49, label_center=200.0)[:3].tolist() == [1000, 1002, 1004]
    # frames past the last label get the ignore index
    short = align_labels_to_frames(np.arange(10), 8)
    assert short.tolist() == [1, 3, 5, 7, 9, -100, -100, -100]


def test_cluster_logits_and_loss_match_reference():
    g = torch.Generator().manual_seed(0)
    proj = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    emb = torch.randn(4, 3, generator=g, dtype=torch.float64)
    logits = cluster_logits(proj, emb, 0.1)
    p, e = proj.tolist(), emb.tolist()

    def cos(u, v):
        return sum(a * b for a, b in zip(u, v, strict=True)) / math.sqrt(
            sum(a * a for a in u) * sum(b * b for b in v)
        )

    ref = [[[cos(p[b][t], e[c]) / 0.1 for c in range(4)] for t in range(5)] for b in range(2)]
    np.testing.assert_allclose(logits.numpy(), np.array(ref), atol=1e-12)

    targets = torch.tensor([[0, 3, 2, 1, -100], [2, 2, 0, -100, -100]])
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 1, 1, 0, 0]], dtype=torch.bool)

    def ce(b, t):
        row = ref[b][t]
        return -(row[targets[b, t]] - math.log(sum(math.exp(x) for x in row)))

    masked = [(0, 0), (0, 1), (1, 1), (1, 2)]
    unmasked = [(0, 2), (0, 3), (1, 0)]  # real frames with a target, not masked
    l_m = sum(ce(*i) for i in masked) / len(masked)
    l_u = sum(ce(*i) for i in unmasked) / len(unmasked)
    assert masked_prediction_loss(logits, targets, mask).item() == pytest.approx(l_m, abs=1e-10)
    got = masked_prediction_loss(logits, targets, mask, masked_weight=0.7).item()
    assert got == pytest.approx(0.7 * l_m + 0.3 * l_u, abs=1e-10)
    with pytest.raises(ValueError, match="target 4 is outside"):
        masked_prediction_loss(logits, targets.clamp(max=3) + (targets == 3).long(), mask)


def small_hubert(seed=0):
    torch.manual_seed(seed)
    enc = SpeechEncoder(
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        dropout=0.0,
    )
    return HuBERT(enc, num_clusters=6, embedding_dim=8)


def test_hubert_method_on_padded_batch():
    m = small_hubert().train()
    lengths = torch.tensor([16000, 5000])
    x = torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    x[1, 5000:] = 0.0
    mask = torch.zeros(2, 49, dtype=torch.bool)
    mask[0, 5:20] = mask[1, 3:13] = True
    rng = np.random.default_rng(0)
    targets = torch.full((2, 49), -100, dtype=torch.long)
    targets[0] = torch.from_numpy(align_labels_to_frames(rng.integers(0, 6, 100), 49))
    targets[1, :15] = torch.from_numpy(align_labels_to_frames(rng.integers(0, 6, 31), 15))
    loss = m([x, lengths, mask, targets])
    loss.backward()
    with torch.no_grad():
        logits = m.logits(m.encoder.frames(x, lengths, mask).hidden)
    expected = torch.nn.functional.cross_entropy(logits[mask], targets[mask])
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    assert m.label_embeddings.grad.abs().sum() > 0
    bad = targets.clone()
    bad[1, 20] = 0  # a target on a padded frame of the 5000-sample clip
    with pytest.raises(ValueError, match="padded"):
        m([x, lengths, mask, bad])
