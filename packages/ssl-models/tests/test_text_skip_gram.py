import collections
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_models.text import (
    SkipGram,
    UnknownTokenError,
    WordEmbeddingEncoder,
    WordVectors,
    skip_gram_pairs,
    subsample_keep_probability,
    unigram_noise_distribution,
)

WORDNET_NOUNS = Path("/usr/share/wordnet/data.noun")


def test_skip_gram_pairs_match_loop_reference():
    ids = torch.tensor([[5, 6, 7, 8, 0], [0, 0, 9, 10, 11]])
    mask = (ids != 0).long()
    center, context = skip_gram_pairs(ids, mask, window=2)
    expected = []
    for row, m in zip(ids.tolist(), mask.tolist(), strict=True):
        for i in range(len(row)):
            for o in (-2, -1, 1, 2):
                j = i + o
                if m[i] and 0 <= j < len(row) and m[j]:
                    expected.append((row[i], row[j]))
    assert list(zip(center.tolist(), context.tolist(), strict=True)) == expected
    assert len(expected) == 10 + 6


def test_noise_distribution_and_subsampling_formulas():
    counts = [100, 10, 1, 0]
    p = unigram_noise_distribution(counts).numpy()
    ref = np.array(counts, dtype=float) ** 0.75
    np.testing.assert_allclose(p, ref / ref.sum(), rtol=1e-12)
    keep = subsample_keep_probability(counts, threshold=0.01).numpy()
    f = np.array(counts[:3]) / 111
    np.testing.assert_allclose(keep[:3], np.minimum(1, np.sqrt(0.01 / f) + 0.01 / f))
    assert keep[3] == 1.0
    with pytest.raises(ValueError, match="non-negative"):
        unigram_noise_distribution([1, -1])


def test_negative_samples_follow_the_noise_distribution_and_are_keyed():
    counts = torch.tensor([400, 100, 50, 10, 1, 0])
    method = SkipGram(WordEmbeddingEncoder(6, 4), counts=counts, num_negatives=20, seed=3)
    draws = method.sample_negatives(20_000, torch.device("cpu"))
    freq = np.bincount(draws.flatten().numpy(), minlength=6) / draws.numel()
    np.testing.assert_allclose(freq, unigram_noise_distribution(counts).numpy(), atol=3e-3)
    assert freq[5] == 0.0
    method.sample_calls.zero_()
    again = method.sample_negatives(20_000, torch.device("cpu"))
    assert torch.equal(again, draws)  # a pure function of (seed, rank, counter)
    assert int(method.sample_calls) == 1 and "sample_calls" in method.state_dict()


def test_negative_sampling_loss_equals_numpy_reference():
    torch.manual_seed(0)
    method = SkipGram(WordEmbeddingEncoder(10, 3), num_negatives=2)
    torch.nn.init.normal_(method.output_vectors.weight)
    center, context = torch.tensor([1, 4, 7]), torch.tensor([2, 5, 9])
    negatives = torch.tensor([[3, 8], [0, 6], [1, 2]])
    loss = method.training_loss({"center": center, "context": context, "negatives": negatives})
    v = method.input_vectors.weight.detach().double().numpy()
    u = method.output_vectors.weight.detach().double().numpy()

    def log_sigmoid(x):
        return -np.logaddexp(0, -x)

    ref = np.mean(
        [
            -log_sigmoid(u[o] @ v[c]) - sum(log_sigmoid(-u[k] @ v[c]) for k in negs)
            for c, o, negs in zip(
                center.tolist(), context.tolist(), negatives.tolist(), strict=True
            )
        ]
    )
    assert loss.item() == pytest.approx(ref, rel=1e-6)


def test_word_vectors_lookup():
    vectors = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    wv = WordVectors(["king", "queen", "river", "not"], vectors)
    assert torch.equal(wv["river"], torch.tensor([0.0, 1.0])) and "king" in wv and len(wv) == 4
    top = wv.most_similar("king", topn=2)
    assert [t for t, _ in top] == ["queen", "river"]
    assert top[0][1] == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    assert wv.similarity("king", "not") == pytest.approx(-1.0)
    assert wv.most_similar(torch.tensor([0.0, 2.0]), topn=1)[0][0] == "river"
    with pytest.raises(UnknownTokenError, match="'castle' is not in the vocabulary"):
        wv["castle"]
    with pytest.raises(KeyError):
        wv.similarity("castle", "king")


def _wordnet_glosses(every=4):
    """Glosses of WordNet nouns (text after '|'), lowercased, split on whitespace, with the
    punctuation around each word stripped."""
    glosses = []
    with WORDNET_NOUNS.open(encoding="utf-8") as f:
        for k, line in enumerate(f):
            if line.startswith("  ") or "|" not in line or k % every:
                continue
            words = (w.strip(".,;:\"()`'!?") for w in line.split("|", 1)[1].lower().split())
            glosses.append([w for w in words if w])
    return glosses


@pytest.fixture
def one_thread():
    # Small ops on a shared 2-core machine run many times slower with 2 threads than with 1.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


RELATED = [
    ("king", "queen"),
    ("father", "mother"),
    ("son", "daughter"),
    ("north", "south"),
    ("music", "musical"),
    ("disease", "infection"),
    ("city", "town"),
    ("bird", "birds"),
    ("tree", "plant"),
]


@pytest.mark.skipif(not WORDNET_NOUNS.exists(), reason="needs Debian wordnet-base")
def test_skip_gram_on_wordnet_glosses_brings_related_words_together(one_thread):
    torch.manual_seed(0)
    glosses = _wordnet_glosses()
    counts = collections.Counter(w for g in glosses for w in g)
    vocab = [w for w, c in counts.most_common() if c >= 8]
    index = {w: i for i, w in enumerate(vocab)}
    freq = torch.tensor([counts[w] for w in vocab])
    keep = subsample_keep_probability(freq, threshold=1e-4).numpy()
    rng = np.random.default_rng(0)
    length = 24
    rows = []
    for g in glosses:
        ids = np.array([index[w] for w in g if w in index], dtype=np.int64)
        ids = ids[rng.random(len(ids)) < keep[ids]][:length]
        if len(ids) >= 2:
            rows.append(np.pad(ids, (0, length - len(ids)), constant_values=-1))
    padded = torch.from_numpy(np.stack(rows))
    center, context = skip_gram_pairs(padded.clamp(min=0), padded >= 0, window=3)
    assert center.shape[0] > 100_000

    method = SkipGram(WordEmbeddingEncoder(len(vocab), 32), counts=freq, num_negatives=5)

    def percentile_ranks():
        wv = WordVectors.from_embedding(vocab, method.input_vectors)
        out = []
        for a, b in RELATED:
            sims = wv._unit @ wv[a] / wv[a].norm()
            out.append(float((sims > sims[wv.index[b]]).float().mean()))
        return np.array(out), wv

    before, _ = percentile_ranks()
    optimizer = torch.optim.Adam(method.parameters(), lr=0.02)
    order = torch.randperm(center.shape[0])
    batch = 2048
    for step in range(250):
        sel = order[(step * batch + torch.arange(batch)) % len(order)]
        loss = method.training_loss({"center": center[sel], "context": context[sel]})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after, wv = percentile_ranks()
    # Rank of b among all words by similarity to a: ~0.5 by chance (the untrained vectors),
    # within the top few percent after training.
    assert np.median(before) > 0.15, before
    assert np.median(after) < 0.03, after
    assert (after < before).sum() >= len(RELATED) - 1, (before, after)
    g = torch.Generator().manual_seed(1)
    random_pairs = torch.randint(0, len(vocab), (500, 2), generator=g).tolist()
    random_cos = np.mean([wv.similarity(vocab[i], vocab[j]) for i, j in random_pairs if i != j])
    related_cos = np.mean([wv.similarity(a, b) for a, b in RELATED])
    assert related_cos > random_cos + 0.2, (related_cos, random_cos)
