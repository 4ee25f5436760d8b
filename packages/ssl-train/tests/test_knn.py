import numpy as np
import pytest

from ssl_train.evaluation import knn_predict, knn_top1


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
