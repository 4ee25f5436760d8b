import numpy as np
import pytest

from ssl_train.evaluation import knn_accuracy, knn_predict, knn_top1, knn_votes


def _reference_votes(train, labels, test, k, t, c):
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    out = np.zeros((len(test), c))
    for i, q in enumerate(test):
        sims = train @ q
        for j in np.argsort(-sims, kind="stable")[:k]:
            out[i, labels[j]] += np.exp(sims[j] / t)
    return out


def _reference(train, labels, test, k, t, c):
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    out = []
    for q in test:
        sims = train @ q
        nn = np.argsort(-sims, kind="stable")[:k]
        votes = np.zeros(c)
        for j in nn:
            votes[labels[j]] += np.exp(sims[j] / t)
        out.append(votes.argmax())
    return np.array(out)


@pytest.mark.parametrize("k", [1, 5, 40])
def test_matches_loop_reference(k):
    rng = np.random.default_rng(0)
    train = rng.normal(size=(300, 8)).astype(np.float32)
    labels = rng.integers(0, 4, 300)
    test = rng.normal(size=(50, 8)).astype(np.float32)
    pred = knn_predict(train, labels, test, k=k, temperature=0.1, num_classes=4, chunk_size=7)
    np.testing.assert_array_equal(pred, _reference(train, labels, test, k, 0.1, 4))


def test_separable_clusters_are_perfect_and_scale_free():
    centers = np.eye(3, 6) * 10
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 50)
    train = centers[labels] + rng.normal(size=(150, 6))
    test = centers[labels] * 3 + rng.normal(size=(150, 6))  # cosine ignores the norm
    assert knn_top1(train, labels, test, labels, k=20) == 1.0


def test_shape_errors():
    with pytest.raises(ValueError, match="need train"):
        knn_predict(np.zeros((4, 3)), np.zeros(4, int), np.zeros((2, 5)))


def test_votes_and_top5_match_loop_reference():
    rng = np.random.default_rng(3)
    train = rng.normal(size=(400, 6)).astype(np.float32)
    labels = rng.integers(0, 8, 400)
    test = rng.normal(size=(80, 6)).astype(np.float32)
    test_labels = rng.integers(0, 8, 80)
    votes = knn_votes(train, labels, test, k=30, temperature=0.1, num_classes=8, chunk_size=9)
    ref = _reference_votes(train, labels, test, 30, 0.1, 8)
    np.testing.assert_allclose(votes.numpy(), ref, rtol=1e-4)
    order = np.argsort(-ref, axis=1)
    top5 = np.mean([test_labels[i] in order[i, :5] for i in range(80)])
    top1, got5 = knn_accuracy(train, labels, test, test_labels, k=30, temperature=0.1)
    assert got5 == pytest.approx(top5) and 0 < top1 < got5 < 1
    assert top1 == knn_top1(train, labels, test, test_labels, k=30, temperature=0.1)
