"""Linear probe: the solver against scikit-learn, the protocol on real Fashion-MNIST pixels."""

import json

import numpy as np
import pytest
import torch

from ssl_data import load_fashion_mnist
from ssl_data.datasets import bundled_sample_root
from ssl_train.cli import main
from ssl_train.evaluation import fit_logistic_regression, linear_probe, topk_accuracy


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small solves on a shared 2-core machine run many times faster on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pixels():
    """The bundled real sample: 2,000 train and 1,000 test images as (N, 784) floats in [0, 1]."""
    root = bundled_sample_root()
    (xtr, ytr), (xte, yte) = (load_fashion_mnist(s, root=root) for s in ("train", "test"))
    return (
        (xtr.reshape(len(xtr), -1) / 255.0).astype(np.float32),
        ytr,
        (xte.reshape(len(xte), -1) / 255.0).astype(np.float32),
        yte,
    )


def test_solver_matches_scikit_learn_logistic_regression(pixels):
    sklearn = pytest.importorskip("sklearn.linear_model")
    x, y = pixels[0][:600], pixels[1][:600]
    x = x.reshape(600, 7, 4, 7, 4).mean(axis=(2, 4)).reshape(600, -1).astype(np.float64)
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1)
    wd = 1e-2
    w, b = fit_logistic_regression(
        torch.from_numpy(x).float(), torch.from_numpy(y), wd, num_classes=10, max_iter=200
    )
    # scikit-learn minimises sum CE + |W|^2 / (2C): the same optimum when C = 1 / (wd N).
    ref = sklearn.LogisticRegression(C=1 / (wd * len(x)), tol=1e-6, max_iter=10_000).fit(x, y)
    probs = torch.softmax(torch.from_numpy(x).float() @ w + b, dim=1).numpy()
    np.testing.assert_allclose(probs, ref.predict_proba(x), atol=3e-3)
    np.testing.assert_allclose(w.numpy(), ref.coef_.T, atol=3e-3)
    assert np.abs(ref.coef_).max() > 0.3  # the weights are far from their zero start


def test_raw_pixels_reach_the_known_linear_accuracy(pixels):
    # 60k train images give 0.843 (ENVIRONMENT.md); the 2k-image sample gives a little less.
    result = linear_probe(*pixels, seed=0)
    assert 0.79 <= result.top1 <= 0.86
    assert result.top5 >= 0.97 and result.top5 > result.top1
    assert result.num_train == 2000 and result.num_test == 1000 and result.num_classes == 10
    assert set(result.val_top1) == {1e-1, 1e-2, 1e-3, 1e-4, 1e-5}
    # The final weight decay is a swept one scaled by the rows the sweep fitted (1800 of 2000).
    assert any(result.weight_decay == pytest.approx(wd * 0.9) for wd in result.val_top1)
    best = max(result.val_top1.values())
    chosen = next(wd for wd, acc in result.val_top1.items() if acc == best)  # strongest on ties
    assert result.weight_decay == pytest.approx(chosen * 0.9)
    top1, top5 = topk_accuracy(result.scores(pixels[2]), pixels[3])
    assert (top1, top5) == (pytest.approx(result.top1), pytest.approx(result.top5))


def test_deterministic_for_a_seed(pixels):
    xtr, ytr, xte, yte = (a[:500] for a in pixels)
    a = linear_probe(xtr, ytr, xte, yte, seed=3, max_iter=20)
    b = linear_probe(xtr, ytr, xte, yte, seed=3, max_iter=20)
    c = linear_probe(xtr, ytr, xte, yte, seed=4, max_iter=20)
    assert a.top1 == b.top1 and a.val_top1 == b.val_top1
    np.testing.assert_array_equal(a.weight, b.weight)
    assert a.val_top1 != c.val_top1  # another held-out part


def test_separable_clusters_and_few_classes():
    rng = np.random.default_rng(0)
    centers = np.eye(3, 8) * 6
    ytr, yte = np.repeat(np.arange(3), 60), np.repeat(np.arange(3), 20)
    xtr = centers[ytr] + rng.normal(size=(180, 8))
    xte = centers[yte] + rng.normal(size=(60, 8))
    result = linear_probe(xtr, ytr, xte, yte)
    assert result.top1 == 1.0 and result.top5 == 1.0  # three classes: top-5 is every class


def test_single_weight_decay_skips_the_sweep_and_sweep_rows_scales_it(pixels):
    xtr, ytr, xte, yte = (a[:400] for a in pixels)
    fixed = linear_probe(xtr, ytr, xte, yte, weight_decays=[1e-3], max_iter=10)
    assert fixed.val_top1 == {} and fixed.weight_decay == 1e-3 and fixed.sweep_rows == 0
    small = linear_probe(xtr, ytr, xte, yte, weight_decays=[1e-2, 1e-3], sweep_rows=100,
                         max_iter=10)  # fmt: skip
    assert small.sweep_rows == 100
    assert small.weight_decay in (pytest.approx(1e-2 / 4), pytest.approx(1e-3 / 4))


def test_bad_inputs_are_named():
    x, y = np.zeros((10, 4), np.float32), np.arange(10) % 2
    with pytest.raises(ValueError, match="one width"):
        linear_probe(x, y, np.zeros((5, 3)), y[:5])
    with pytest.raises(ValueError, match="NaN"):
        linear_probe(np.full((10, 4), np.nan), y, x, y)
    with pytest.raises(ValueError, match="val_fraction must be in"):
        linear_probe(x, y, x, y, val_fraction=1.0)
    with pytest.raises(ValueError, match="train labels must be"):
        linear_probe(x, y.astype(float), x, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        linear_probe(x, np.zeros(10, int), x, np.zeros(10, int))


def test_topk_accuracy_against_brute_force():
    rng = np.random.default_rng(2)
    scores, labels = rng.normal(size=(200, 7)), rng.integers(0, 7, 200)
    order = np.argsort(-scores, axis=1)
    for k in (1, 3, 5, 9):
        expected = np.mean([labels[i] in order[i, :k] for i in range(200)])
        assert topk_accuracy(scores, labels, (k,))[0] == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 7\)"):
        topk_accuracy(scores, labels + 1)


def test_cli_evaluate_embeddings_with_linear_probe(tmp_path, capsys):
    rng = np.random.default_rng(0)
    centers = np.eye(6, 10) * 5
    ytr, yte = np.repeat(np.arange(6), 50), np.repeat(np.arange(6), 10)
    np.savez(tmp_path / "e.npz", train_embeddings=centers[ytr] + rng.normal(size=(300, 10)),
             train_labels=ytr, test_embeddings=centers[yte] + rng.normal(size=(60, 10)),
             test_labels=yte)  # fmt: skip
    args = ["evaluate", "--embeddings", str(tmp_path / "e.npz"), "--k", "5", "--linear-probe",
            "--weight-decays", "1e-2", "1e-3", "--seed", "1", "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["knn_top1_k5"] == 1.0 and out["knn_top5_k5"] == 1.0
    assert out["linear_probe_top1"] == 1.0 and out["linear_probe_top5"] == 1.0
    assert set(out["linear_probe_val_top1"]) == {"0.01", "0.001"}
    assert out["linear_probe_seed"] == 1
    np.savez(tmp_path / "bad.npz", train_embeddings=np.zeros((4, 3)), train_labels=np.arange(4),
             test_embeddings=np.zeros((2, 5)), test_labels=np.arange(2))  # fmt: skip
    assert main(["evaluate", "--embeddings", str(tmp_path / "bad.npz"), "--linear-probe"]) == 2
    assert "bad.npz" in capsys.readouterr().err
    # A lone array (what `ssl-serve embed` writes) is named as that, not a traceback.
    np.save(tmp_path / "served.npy", np.zeros((3, 4), dtype=np.float32))
    assert main(["evaluate", "--embeddings", str(tmp_path / "served.npy")]) == 2
    err = capsys.readouterr().err
    assert "served.npy: need an .npz with train_embeddings" in err and "one ndarray" in err
