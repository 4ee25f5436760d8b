import numpy as np
import pytest
import torch

from ssl_data import RandAugment, SimCLRView, TrivialAugment, uniform
from ssl_data.policies import IDENTITY_AT_ZERO, OP_NAMES, magnitude_table
from ssl_data.policies.augment_ops import apply_op


@pytest.mark.parametrize("images", ["gray", "rgb", "rgba"])
def test_rand_augment_at_magnitude_zero_is_identity(images, request):
    x = request.getfixturevalue(images)
    policy = RandAugment(num_ops=3, magnitude=0, ops=IDENTITY_AT_ZERO)
    u = uniform(0, 0, range(len(x)), policy.num_uniforms)
    # every op was drawn at least once across the batch
    drawn = {int(k) for k in (u[:, 0::2] * len(IDENTITY_AT_ZERO)).astype(int).ravel()}
    assert drawn == set(range(len(IDENTITY_AT_ZERO)))
    torch.testing.assert_close(policy(x, u), x.float() / 255, rtol=0, atol=1e-5)


def test_rand_augment_applies_exactly_num_ops(rgb):
    # Solarize at the top bin has threshold 0: it inverts everything, so two of them cancel.
    x = rgb.float() / 255
    u = uniform(0, 0, range(len(x)), 6)
    one = RandAugment(num_ops=1, magnitude=30, ops=("Solarize",))(x, u[:, :2])
    two = RandAugment(num_ops=2, magnitude=30, ops=("Solarize",))(x, u[:, :4])
    three = RandAugment(num_ops=3, magnitude=30, ops=("Solarize",))(x, u)
    torch.testing.assert_close(one, 1 - x)
    torch.testing.assert_close(two, x)
    torch.testing.assert_close(three, 1 - x)


def test_trivial_augment_draws_uniform_bins_and_signs():
    # Brightness on flat 0.5 gray: the output 0.5 * (1 + m) reveals the signed magnitude m.
    n = 3100
    policy = TrivialAugment(ops=("Brightness",))
    u = uniform(5, 0, range(n), policy.num_uniforms)
    out = policy(torch.full((n, 1, 4, 4), 0.5), u)[:, 0, 0, 0].double().numpy()
    m = out / 0.5 - 1
    table = magnitude_table("Brightness", 31, 4, 4, wide=True)
    bins = np.abs(np.abs(m)[:, None] - table[None]).argmin(1)
    np.testing.assert_allclose(np.abs(m), table[bins], atol=1e-6)
    counts = np.bincount(bins, minlength=31)
    assert counts.min() > 60 and counts.max() < 140  # ~100 per bin
    assert 0.45 < (m < -1e-9).sum() / (np.abs(m) > 1e-9).sum() < 0.55


def test_magnitude_tables_match_torchvision():
    assert magnitude_table("Rotate", 31, 28, 28, wide=False)[9] == pytest.approx(9.0)
    assert magnitude_table("Rotate", 31, 28, 28, wide=True)[30] == pytest.approx(135.0)
    assert magnitude_table("TranslateX", 31, 331, 331, wide=False)[30] == pytest.approx(150.0)
    assert magnitude_table("ShearX", 31, 28, 28, wide=False)[30] == pytest.approx(0.3)
    np.testing.assert_array_equal(
        magnitude_table("Posterize", 31, 28, 28, wide=False)[[0, 4, 8, 30]], [8, 7, 7, 4]
    )
    assert magnitude_table("Posterize", 31, 28, 28, wide=True)[30] == 2


def test_ops_match_numpy_references(rgb):
    x = rgb[:4].float() / 255
    xn = x.numpy()
    levels = np.round(xn * 255).astype(np.int64)
    post = apply_op("Posterize", x, np.array([8, 5, 2, 0])).numpy()
    for i, b in enumerate((8, 5, 2, 0)):
        np.testing.assert_allclose(post[i], (levels[i] & (0xFF << (8 - b) & 0xFF)) / 255, atol=1e-7)
    auto = apply_op("AutoContrast", x * 0.5 + 0.2, np.zeros(4)).numpy()
    y = xn * 0.5 + 0.2
    lo, hi = y.min(axis=(2, 3), keepdims=True), y.max(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(auto, (y - lo) / (hi - lo), atol=1e-6)
    shifted = apply_op("TranslateX", x, np.array([3.0, -2.0, 0.0, 5.0])).numpy()
    for i, t in enumerate((3, -2, 0, 5)):
        ref = np.zeros_like(xn[i])
        if t >= 0:
            ref[:, :, t:] = xn[i, :, :, : 28 - t]
        else:
            ref[:, :, :t] = xn[i, :, :, -t:]
        np.testing.assert_allclose(shifted[i], ref, atol=1e-5)
    eq = apply_op("Equalize", x, np.zeros(4)).numpy()
    for i in range(4):
        for c in range(3):
            np.testing.assert_allclose(eq[i, c], pil_equalize(levels[i, c]) / 255, atol=1e-5)


def pil_equalize(levels: np.ndarray) -> np.ndarray:
    """PIL's ImageOps.equalize on one channel of 8-bit levels."""
    hist = np.bincount(levels.ravel(), minlength=256)
    nonzero = hist[hist > 0]
    step = (nonzero.sum() - nonzero[-1]) // 255 if len(nonzero) > 1 else 0
    if step == 0:
        return levels.astype(np.float64)
    lut = (step // 2 + np.concatenate([[0], np.cumsum(hist)[:-1]])) // step
    return np.minimum(lut, 255)[levels].astype(np.float64)


def test_policy_inside_view_generator_uses_its_own_stream(rgb):
    base = SimCLRView(size=20, mean=(0.5,) * 3, std=(0.25,) * 3)
    with_identity = SimCLRView(
        size=20, mean=(0.5,) * 3, std=(0.25,) * 3,
        policy=RandAugment(num_ops=2, magnitude=0, ops=IDENTITY_AT_ZERO),
    )  # fmt: skip
    idx = np.arange(len(rgb))
    for a, b in zip(base(rgb, idx, 0), with_identity(rgb, idx, 0), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    strong = SimCLRView(size=20, mean=(0.5,) * 3, std=(0.25,) * 3, policy=RandAugment(magnitude=20))
    a, _ = strong(rgb, idx, 0)
    assert a.shape == (len(rgb), 3, 20, 20)
    assert not torch.allclose(a, base(rgb, idx, 0)[0])


def test_unknown_op_and_bad_magnitude_raise():
    with pytest.raises(ValueError, match="ops must be"):
        RandAugment(ops=("Blur",))
    with pytest.raises(ValueError, match="magnitude"):
        RandAugment(magnitude=31)
    assert len(OP_NAMES) == 14
