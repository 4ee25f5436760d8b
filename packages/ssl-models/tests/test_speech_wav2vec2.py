"""wav2vec 2.0: distractor sampling on padded batches, the contrastive and diversity losses
against independent references, Gumbel temperature annealing, the collapse warning, a padded
mixed-length step."""

import math

import numpy as np
import pytest
import torch

from ssl_models.speech import (
    SpeechEncoder,
    codebook_diversity_loss,
    codebook_perplexity,
    has_negatives,
    sample_negative_indices,
    wav2vec2_contrastive_loss,
)
from ssl_models.speech.wav2vec2 import Wav2Vec2


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_method(seed=0, **kwargs):
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
    defaults = dict(
        num_negatives=10, num_codevectors_per_group=8, codevector_dim=16, proj_codevector_dim=16
    )
    return Wav2Vec2(enc, **{**defaults, **kwargs})


def padded_batch_mask():
    """Lengths 16000 and 5000 samples -> 49 and 15 real frames of 49; spans on real frames."""
    mask = torch.zeros(2, 49, dtype=torch.bool)
    mask[0, 3:13] = True
    mask[0, 30:45] = True
    mask[1, 2:12] = True
    mask[1, 13:15] = True  # up to the last real frame (14)
    return torch.tensor([16000, 5000]), mask


def test_distractors_never_index_padding_or_the_positive():
    lengths, mask = padded_batch_mask()
    g = torch.Generator().manual_seed(0)
    k = 400
    neg = sample_negative_indices(mask, k, generator=g)
    assert neg.shape == (2, 49, k) and neg.dtype == torch.int64
    for b in range(2):
        masked = set(mask[b].nonzero().flatten().tolist())
        for t in range(49):
            row = neg[b, t].tolist()
            if t not in masked:
                assert row == [-1] * k  # not an anchor
                continue
            assert set(row) <= masked - {t}  # same utterance, masked, not the positive
    real_frames = ((lengths - 400) // 320 + 1).tolist()  # 20 ms hop, 25 ms window at 16 kHz
    assert real_frames == [49, 15]
    for b in range(2):  # never a padded frame (the 5000-sample clip has 15 real frames)
        assert int(neg[b].max()) < real_frames[b]
    # uniform over the other masked frames: every one drawn, counts near (m - 1)^-1 each
    counts = np.bincount(neg[1][mask[1]].flatten().numpy(), minlength=49)
    drawn = counts[mask[1].numpy()]
    m = int(mask[1].sum())
    assert (drawn > 0).all()
    assert m == 12
    # each frame is one of the m - 1 candidates of m - 1 anchors: k draws expected (sd ~ 20)
    assert np.abs(drawn - k).max() < 0.3 * k


def test_no_distractor_possible_means_no_anchor():
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[0, 1] = True  # one masked frame: nothing else to draw from
    mask[1, 2:4] = True  # two: each one's only distractor is the other
    neg = sample_negative_indices(mask, 5, generator=torch.Generator().manual_seed(0))
    assert (neg[0] == -1).all() and (neg[2] == -1).all()
    assert neg[1, 2].tolist() == [3] * 5 and neg[1, 3].tolist() == [2] * 5
    assert has_negatives(mask).nonzero().tolist() == [[1, 2], [1, 3]]
    with pytest.raises(ValueError, match="no anchor"):
        wav2vec2_contrastive_loss(torch.ones(1, 6, 4), torch.ones(1, 6, 4), neg[:1])
    with pytest.raises(ValueError, match="num_negatives"):
        sample_negative_indices(mask, 0)


def _reference_contrastive(c, q, neg, kappa, drop_duplicates=True):
    """Loop over anchors in float64 Python arithmetic (arXiv:2006.11477, eq. 3)."""

    def cos(u, v):
        dot = sum(x * y for x, y in zip(u, v, strict=True))
        return dot / (math.sqrt(sum(x * x for x in u)) * math.sqrt(sum(y * y for y in v)))

    c, q, neg = c.tolist(), q.tolist(), neg.tolist()
    terms = []
    for b in range(len(c)):
        for t in range(len(c[b])):
            if neg[b][t][0] < 0:
                continue
            pos = cos(c[b][t], q[b][t]) / kappa
            logits = [pos] + [
                cos(c[b][t], q[b][j]) / kappa
                for j in neg[b][t]
                if not (drop_duplicates and q[b][j] == q[b][t])
            ]
            terms.append(-(pos - math.log(sum(math.exp(x) for x in logits))))
    return sum(terms) / len(terms)


def test_contrastive_loss_matches_loop_reference():
    _, mask = padded_batch_mask()
    g = torch.Generator().manual_seed(2)
    c = torch.randn(2, 49, 6, generator=g, dtype=torch.float64)
    q = torch.randn(2, 49, 6, generator=g, dtype=torch.float64)
    neg = sample_negative_indices(mask, 7, generator=g)
    q[0, 5] = q[0, 4]  # frame 5 quantises to frame 4's codewords: if drawn, it is no distractor
    neg[0, 4, 0] = 5  # a legal draw (both masked), made certain
    loss = wav2vec2_contrastive_loss(c, q, neg, temperature=0.1)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(_reference_contrastive(c, q, neg, 0.1), abs=1e-10)
    # the duplicate really is left out: keeping it in the denominator gives another value
    kept = _reference_contrastive(c, q, neg, 0.1, drop_duplicates=False)
    assert abs(kept - loss.item()) > 1e-4


def test_diversity_loss_on_fixed_codebook_distributions():
    g, v = 2, 4
    uniform = torch.full((5, g, v), 1.0 / v)
    assert codebook_diversity_loss(codebook_perplexity(uniform), g, v).item() == pytest.approx(0)
    one_hot = torch.zeros(5, g, v)
    one_hot[..., 0] = 1.0
    assert codebook_diversity_loss(codebook_perplexity(one_hot), g, v).item() == pytest.approx(
        1 - 1 / v
    )
    probs = torch.softmax(torch.randn(6, g, v, generator=torch.Generator().manual_seed(3)), -1)
    keep = torch.tensor([True, True, False, True, True, False])
    p = probs.numpy().astype(np.float64)[keep.numpy()].mean(0)
    ppl = np.exp(-(p * np.log(p)).sum(-1)).sum()
    got = codebook_diversity_loss(codebook_perplexity(probs, keep), g, v)
    assert got.item() == pytest.approx((g * v - ppl) / (g * v), abs=1e-6)


def test_method_diversity_uses_real_frames_and_equals_reference():
    m = small_method().train()
    lengths, mask = padded_batch_mask()
    x = torch.randn(2, 16000, generator=torch.Generator().manual_seed(4))
    loss = m.training_loss([x, lengths, mask], generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        feats = m.encoder.frames(x, lengths).features.double().numpy()
    w = m.quantizer.weight_proj.weight.detach().double().numpy()
    bias = m.quantizer.weight_proj.bias.detach().double().numpy()
    real = [feats[0, :49], feats[1, :15]]
    logits = np.concatenate(real) @ w.T + bias  # (64, G * V)
    z = logits.reshape(-1, 2, 8)
    probs = np.exp(z - z.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    mean = probs.mean(0)
    ppl = np.exp(-(mean * np.log(mean)).sum(-1)).sum()
    terms = m.last_loss_terms
    assert terms["perplexity"].item() == pytest.approx(ppl, rel=1e-5)
    assert terms["diversity"].item() == pytest.approx((16 - ppl) / 16, abs=1e-5)
    expected = terms["contrastive"] + 0.1 * terms["diversity"]
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_gumbel_temperature_anneals_per_step():
    m = small_method(max_gumbel_temperature=2.0, min_gumbel_temperature=0.5)
    assert m.gumbel_temperature == 2.0
    m.after_optimizer_step(1000, 10**6)
    assert m.gumbel_temperature == pytest.approx(2.0 * 0.999995**1000)
    m.after_optimizer_step(400_000, 10**6)  # 2 * 0.999995^400000 = 0.27 -> floored
    assert m.gumbel_temperature == 0.5


def test_gumbel_anneal_fraction_follows_the_run_length():
    m = small_method(gumbel_anneal_fraction=0.5)
    for total in (600, 10_000):
        temps = [m.gumbel_temperature_at(k, total) for k in range(0, total + 1, total // 20)]
        assert temps[0] == 2.0 and all(a >= b for a, b in zip(temps, temps[1:], strict=False))
        assert m.gumbel_temperature_at(total // 4, total) == pytest.approx(1.0)  # sqrt(2 * 0.5)
        assert m.gumbel_temperature_at(total // 2, total) == pytest.approx(0.5)
        assert m.gumbel_temperature_at(total, total) == pytest.approx(0.5)
    m.after_optimizer_step(150, 600)
    assert m.gumbel_temperature == pytest.approx(1.0)
    # the paper's per-step decay stays the default
    assert small_method().gumbel_temperature_at(1000, 600) == pytest.approx(2.0 * 0.999995**1000)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(gumbel_anneal_fraction=0.5, gumbel_temperature_decay=0.99), "not both"),
        (dict(gumbel_anneal_fraction=0.0), "gumbel_anneal_fraction must be in"),
        (dict(gumbel_anneal_fraction=1.5), "gumbel_anneal_fraction must be in"),
        (dict(gumbel_temperature_decay=1.01), "gumbel_temperature_decay must be in"),
        (dict(min_gumbel_temperature=3.0), "min_gumbel_temperature <= max"),
    ],
)
def test_bad_gumbel_schedules_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_method(**kwargs)


def test_collapse_warning_on_a_quantiser_that_picks_one_codeword():
    lengths, mask = padded_batch_mask()
    x = torch.randn(2, 16000, generator=torch.Generator().manual_seed(4))
    healthy = small_method()
    assert healthy.collapse_warning() is None and healthy.training_diagnostics() == {}
    healthy.training_loss([x, lengths, mask], generator=torch.Generator().manual_seed(5))
    diagnostics = healthy.training_diagnostics()
    assert set(diagnostics) == {"contrastive", "diversity", "perplexity", "gumbel_temperature"}
    assert diagnostics["perplexity"] > 1.5 * 2 and healthy.collapse_warning() is None
    collapsed = small_method()
    with torch.no_grad():  # every frame's logits favour codeword 0 of each codebook by 100
        collapsed.quantizer.weight_proj.weight.zero_()
        collapsed.quantizer.weight_proj.bias.copy_(torch.tensor([100.0] + [0.0] * 7).repeat(2))
    loss = collapsed.training_loss([x, lengths, mask], generator=torch.Generator().manual_seed(5))
    terms = collapsed.training_diagnostics()
    assert terms["perplexity"] == pytest.approx(2.0, abs=1e-3)  # G codebooks x 1 codeword
    # every distractor equals its positive and is dropped: only the diversity term is left
    assert terms["contrastive"] == 0.0
    assert loss.item() == pytest.approx(0.1 * (1 - 1 / 8), abs=1e-4)
    message = collapsed.collapse_warning()
    assert message is not None and "perplexity 2.00 of 16 codewords" in message


def test_mixed_length_padded_batch_trains():
    """0.5 s and 5 s clips in one batch: finite loss and finite gradients everywhere."""
    m = small_method(num_negatives=20).train()
    lengths = torch.tensor([8000, 80000])
    frames = m.encoder.num_frames(lengths).tolist()
    assert frames == [24, 249]
    x = torch.randn(2, 80000, generator=torch.Generator().manual_seed(6))
    x[0, 8000:] = 0.0
    mask = torch.zeros(2, 249, dtype=torch.bool)
    mask[0, 2:12] = mask[0, 14:24] = True
    mask[1, ::3] = True
    loss = m([x, lengths, mask])
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in m.parameters() if p.requires_grad and p.grad is not None]
    assert len(grads) > 10 and all(torch.isfinite(gr).all() for gr in grads)
    assert m.quantizer.codevectors.grad.abs().sum() > 0  # straight-through Gumbel reaches them


def test_bf16_autocast_step_is_finite_and_close():
    m = small_method().train()
    _, mask = padded_batch_mask()
    lengths = torch.tensor([16000, 5000])
    x = torch.randn(2, 16000, generator=torch.Generator().manual_seed(7))
    torch.manual_seed(9)  # the same Gumbel noise in both calls
    ref = m.training_loss([x, lengths, mask], generator=torch.Generator().manual_seed(8))
    torch.manual_seed(9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = m.training_loss([x, lengths, mask], generator=torch.Generator().manual_seed(8))
    assert got.dtype == torch.float32 and torch.isfinite(got)
    # bfloat16 transformer and projections; the loss itself runs in float32
    assert abs(got.item() - ref.item()) < 0.05 * ref.item()
