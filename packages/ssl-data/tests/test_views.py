import numpy as np
import pytest
import torch

from ssl_data import SimCLRView, load_fashion_mnist, uniform
from ssl_data.datasets import bundled_sample_root
from ssl_data.transforms import brightness_contrast, normalize, resized_crop_flip, sample_crop_boxes


@pytest.fixture(scope="module")
def images():
    x, _ = load_fashion_mnist("train", root=bundled_sample_root())
    return torch.from_numpy(x[:64].copy())


def test_two_views_shape_range_and_differ(images):
    view = SimCLRView(size=28)
    a, b = view(images, np.arange(64), epoch=0)
    assert a.shape == b.shape == (64, 1, 28, 28) and a.dtype == torch.float32
    lo, hi = (0 - 0.2860) / 0.3530, (1 - 0.2860) / 0.3530
    assert a.min() >= lo - 1e-5 and a.max() <= hi + 1e-5
    per_image_diff = (a - b).abs().flatten(1).mean(1)
    assert (per_image_diff > 1e-3).all()


def test_same_index_same_view_in_any_batch_order(images):
    view = SimCLRView(size=28, seed=3)
    idx = np.arange(64)
    a, _ = view(images, idx, epoch=2)
    perm = np.random.default_rng(0).permutation(64)
    c, _ = view(images[perm], idx[perm], epoch=2)
    torch.testing.assert_close(c, a[perm], rtol=0, atol=1e-6)
    d, _ = view(images, idx, epoch=3)
    assert not torch.allclose(a, d)


def test_uint8_and_float_inputs_give_same_views(images):
    view = SimCLRView(size=20)
    a, _ = view(images, np.arange(64), epoch=0)
    f, _ = view(images.float() / 255, np.arange(64), epoch=0)
    torch.testing.assert_close(a, f, rtol=0, atol=1e-5)


def test_full_box_without_flip_is_identity_and_flip_mirrors(images):
    x = images[:4].float().unsqueeze(1) / 255
    boxes = np.tile([0.0, 0.0, 28.0, 28.0], (4, 1))
    same = resized_crop_flip(x, boxes, np.zeros(4, bool), (28, 28))
    torch.testing.assert_close(same, x, rtol=0, atol=1e-5)
    mirrored = resized_crop_flip(x, boxes, np.ones(4, bool), (28, 28))
    torch.testing.assert_close(mirrored, x.flip(-1), rtol=0, atol=1e-5)


def test_box_crop_matches_slicing():
    # An integer box resized to its own size is exactly the slice of the image.
    x = torch.arange(2 * 10 * 12, dtype=torch.float32).view(2, 1, 10, 12)
    boxes = np.array([[2.0, 3.0, 5.0, 6.0], [0.0, 6.0, 5.0, 6.0]])
    out = resized_crop_flip(x, boxes, np.zeros(2, bool), (5, 6))
    torch.testing.assert_close(out[0], x[0, :, 2:7, 3:9])
    torch.testing.assert_close(out[1], x[1, :, 0:5, 6:12])


def test_crop_boxes_inside_image_and_in_scale_range():
    u = uniform(0, 0, range(5000), 22)
    boxes = sample_crop_boxes(u, 100, 80, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 100 + 1e-9).all() and (left + w <= 80 + 1e-9).all()
    area = h * w / (100 * 80)
    assert area.min() >= 0.08 - 1e-9 and area.max() <= 1 + 1e-9
    # the scale range is covered: small and large crops both occur
    assert area.min() < 0.15 and area.max() > 0.9


def test_image_smaller_than_output_is_upsampled():
    tiny = torch.full((3, 1, 1, 1), 200, dtype=torch.uint8)
    a, _ = SimCLRView(size=16, jitter_p=0.0)(tiny, [0, 1, 2], epoch=0)
    assert a.shape == (3, 1, 16, 16)
    torch.testing.assert_close(a, torch.full_like(a, (200 / 255 - 0.2860) / 0.3530))


def test_brightness_contrast_matches_reference():
    rng = np.random.default_rng(0)
    x = rng.random((3, 1, 5, 5)).astype(np.float32)
    bf, cf = np.array([1.0, 1.3, 0.6]), np.array([1.0, 0.7, 1.4])
    out = brightness_contrast(torch.from_numpy(x), bf, cf).numpy()
    for i in range(3):
        y = np.clip(x[i] * bf[i], 0, 1)
        ref = np.clip(cf[i] * y + (1 - cf[i]) * y.mean(), 0, 1)
        np.testing.assert_allclose(out[i], ref, atol=1e-6)


def test_normalize_checks_channels():
    with pytest.raises(ValueError, match="need 3 means"):
        normalize(torch.zeros(1, 3, 2, 2), [0.5], [0.5])


def test_invalid_probability():
    with pytest.raises(ValueError, match="flip_p"):
        SimCLRView(flip_p=1.5)
