import colorsys
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_data import uniform
from ssl_data.transforms import (
    ColorJitter,
    Cutout,
    GaussianBlur,
    RandomAffine,
    RandomErasing,
    RandomFlip,
    RandomGrayscale,
    RandomResizedCrop,
    RandomRotation,
    RandomSolarize,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    affine_matrices,
    blur_kernel_size,
    color_jitter,
    erase,
    gaussian_blur,
    grayscale,
    normalize,
    rotate,
    sample_erase_boxes,
    solarize,
    warp_affine,
)


def f32(x: torch.Tensor) -> np.ndarray:
    return (x.float() / 255).numpy() if x.dtype == torch.uint8 else x.numpy()


def luma_np(x: np.ndarray) -> np.ndarray:  # (B, 3, H, W) -> (B, 1, H, W)
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]


# ---------------------------------------------------------------- random resized crop


@pytest.mark.parametrize("shape", [(3, 100, 80), (3, 1, 1)])
def test_crop_output_is_224_for_large_and_tiny_images(fashion, shape):
    real = torch.from_numpy(fashion[:3].copy()).float().unsqueeze(0) / 255  # (1, 3, 28, 28)
    image = F.interpolate(real, size=shape[1:], mode="bilinear", antialias=True)
    batch = image.repeat(5, 1, 1, 1)
    crop = RandomResizedCrop(224, hflip_p=0.5)
    out = crop(batch, uniform(0, 0, range(5), crop.num_uniforms))
    assert out.shape == (5, 3, 224, 224)
    if shape[1:] == (1, 1):  # one pixel upsampled: every output pixel is that pixel
        torch.testing.assert_close(out, image.expand_as(out), rtol=0, atol=1e-6)
    else:
        assert out.min() >= image.min() - 1e-6 and out.max() <= image.max() + 1e-6


def test_uint8_and_float_inputs_give_same_crops(rgb):
    crop = RandomResizedCrop(20, hflip_p=0.5)
    u = uniform(4, 1, range(32), crop.num_uniforms)
    torch.testing.assert_close(crop(rgb, u), crop(rgb.float() / 255, u), rtol=0, atol=1e-6)


def test_crop_with_full_box_and_flip_coin_matches_numpy(rgb):
    crop = RandomResizedCrop(28, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip_p=0.5)
    u = uniform(0, 0, range(32), crop.num_uniforms)
    out = crop(rgb, u).numpy()
    x = f32(rgb)
    for i in range(32):
        ref = x[i, :, :, ::-1] if u[i, 22] < 0.5 else x[i]
        np.testing.assert_allclose(out[i], ref, atol=1e-5)


# ---------------------------------------------------------------- flips


def test_random_flip_matches_numpy(gray):
    op = RandomFlip(horizontal_p=0.5, vertical_p=0.5)
    u = uniform(1, 0, range(32), 2)
    out = op(gray, u).numpy()
    x = f32(gray)
    for i in range(32):
        ref = x[i]
        if u[i, 0] < 0.5:
            ref = ref[:, :, ::-1]
        if u[i, 1] < 0.5:
            ref = ref[:, ::-1, :]
        np.testing.assert_array_equal(out[i], ref)
    assert 0 < (u[:, 0] < 0.5).sum() < 32 and 0 < (u[:, 1] < 0.5).sum() < 32


# ---------------------------------------------------------------- colour


def brightness_np(x, f):
    return np.clip(x * f, 0, 1)


def contrast_np(x, f):
    m = (luma_np(x[None])[0] if x.shape[0] == 3 else x).mean()
    return np.clip(f * x + (1 - f) * m, 0, 1)


def saturation_np(x, f):
    if x.shape[0] == 1:
        return x
    return np.clip(f * x + (1 - f) * luma_np(x[None])[0], 0, 1)


def hue_np(x, f):
    if x.shape[0] == 1:
        return x
    out = np.empty_like(x)
    for r in range(x.shape[1]):
        for c in range(x.shape[2]):
            h, s, v = colorsys.rgb_to_hsv(*x[:, r, c])
            out[:, r, c] = colorsys.hsv_to_rgb((h + f) % 1.0, s, v)
    return out


REFERENCES = (brightness_np, contrast_np, saturation_np, hue_np)


def test_brightness_contrast_saturation_match_numpy(rgb):
    x = f32(rgb[:6])
    factors = np.array([0.0, 0.5, 1.0, 1.3, 1.8, 0.7])
    for fn, ref in zip(
        (adjust_brightness, adjust_contrast, adjust_saturation), REFERENCES[:3], strict=True
    ):
        out = fn(torch.from_numpy(x), factors).numpy()
        for i in range(6):
            np.testing.assert_allclose(out[i], ref(x[i], factors[i]), atol=2e-6)


def test_hue_shift_of_pure_colours():
    pure = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]]).view(4, 3, 1, 1)
    third = adjust_hue(pure, np.full(4, 1 / 3)).view(4, 3)
    expect = torch.tensor([[0, 1.0, 0], [0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 1.0]])  # red -> green...
    torch.testing.assert_close(third, expect, rtol=0, atol=1e-5)
    back = adjust_hue(pure, np.full(4, -1 / 3)).view(4, 3)
    expect = torch.tensor([[0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 1.0]])  # red -> blue
    torch.testing.assert_close(back, expect, rtol=0, atol=1e-5)


def test_hue_matches_colorsys_on_real_image(rgb):
    x = f32(rgb[:2, :, 8:14, 8:14])
    shifts = np.array([0.12, -0.31])
    out = adjust_hue(torch.from_numpy(x), shifts).numpy()
    for i in range(2):
        np.testing.assert_allclose(out[i], hue_np(x[i], shifts[i]), atol=1e-5)


def test_saturation_and_hue_are_noops_on_gray(gray):
    x = gray[:4].float() / 255
    torch.testing.assert_close(adjust_saturation(x, np.zeros(4)), x)
    torch.testing.assert_close(adjust_hue(x, np.full(4, 0.4)), x)


def test_color_jitter_runs_each_sample_in_its_own_order(rgb):
    x = f32(rgb[:8, :, 4:20, 4:20])
    rng = np.random.default_rng(0)
    factors = np.stack(
        [rng.uniform(0.5, 1.5, 8), rng.uniform(0.5, 1.5, 8), rng.uniform(0.5, 1.5, 8),
         rng.uniform(-0.1, 0.1, 8)], axis=1,
    )  # fmt: skip
    order = np.stack([rng.permutation(4) for _ in range(8)])
    out = color_jitter(torch.from_numpy(x), factors, order).numpy()
    for i in range(8):
        ref = x[i]
        for op in order[i]:
            ref = REFERENCES[op](ref, factors[i, op])
        np.testing.assert_allclose(out[i], ref, atol=1e-5)
    # the order matters: brightness-then-contrast differs from contrast-then-brightness
    swapped = order.copy()
    swapped[:, [0, 1]] = swapped[:, [1, 0]]
    assert not np.allclose(color_jitter(torch.from_numpy(x), factors, swapped).numpy(), out)


def test_color_jitter_parameters_follow_torchvision_ranges():
    op = ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, p=0.8)
    u = uniform(0, 0, range(20000), op.num_uniforms)
    apply, factors, order = op.parameters(u)
    assert abs(apply.mean() - 0.8) < 0.01
    for j, (lo, hi) in enumerate([(0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1)]):
        assert factors[:, j].min() >= lo and factors[:, j].max() <= hi
        assert factors[:, j].min() < lo + 0.01 and factors[:, j].max() > hi - 0.01
    seen = {tuple(r) for r in order}
    assert seen == set(itertools.permutations(range(4)))  # all 24 orders occur


def test_grayscale_matches_luma_and_keeps_alpha(rgba, gray):
    x = f32(rgba[:4])
    out = grayscale(torch.from_numpy(x)).numpy()
    for c in range(3):
        np.testing.assert_allclose(out[:, c : c + 1], luma_np(x), atol=1e-6)
    np.testing.assert_array_equal(out[:, 3], x[:, 3])
    g = gray[:4].float() / 255
    torch.testing.assert_close(grayscale(g), g)
    op = RandomGrayscale(p=0.5)
    u = uniform(0, 0, range(4), 1)
    rnd = op(rgba[:4], u).numpy()
    for i in range(4):
        np.testing.assert_array_equal(rnd[i], out[i] if u[i, 0] < 0.5 else x[i])


def test_rgba_alpha_untouched_by_colour_ops(rgba):
    x = rgba.float() / 255
    alpha = x[:, 3]
    n = len(x)
    outs = [
        adjust_brightness(x, np.full(n, 1.7)),
        adjust_contrast(x, np.full(n, 0.3)),
        adjust_saturation(x, np.full(n, 0.2)),
        adjust_hue(x, np.full(n, 0.25)),
        solarize(x, 0.3),
        gaussian_blur(x, np.full(n, 1.5), 5),
        erase(x, np.tile([2, 2, 10, 10], (n, 1))),
        normalize(x, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)),
    ]
    for out in outs:
        assert out.shape == x.shape
        torch.testing.assert_close(out[:, 3], alpha, rtol=0, atol=0)
        assert not torch.allclose(out[:, :3], x[:, :3])


# ---------------------------------------------------------------- blur, solarise


def blur_np(x, sigma, k):
    r = k // 2
    t = np.arange(-r, r + 1)
    g = np.exp(-(t**2) / (2 * sigma**2))
    g /= g.sum()
    pad = np.pad(x, ((0, 0), (r, r), (r, r)), mode="reflect")
    out = np.zeros_like(x, dtype=np.float64)
    for dy in range(k):
        for dx in range(k):
            out += g[dy] * g[dx] * pad[:, dy : dy + x.shape[1], dx : dx + x.shape[2]]
    return out


def test_gaussian_blur_matches_numpy_convolution(rgb):
    x = f32(rgb[:3])
    sigma = np.array([0.4, 1.0, 2.0])
    out = gaussian_blur(torch.from_numpy(x), sigma, 7).numpy()
    for i in range(3):
        np.testing.assert_allclose(out[i], blur_np(x[i], sigma[i], 7), atol=1e-5)
    assert blur_kernel_size(224, 224) == 23 and blur_kernel_size(28, 28) == 3
    assert blur_kernel_size(1, 1) == 1 and blur_kernel_size(2, 96) == 3


def test_random_blur_probability_and_sigma(gray):
    op = GaussianBlur(p=0.5, sigma=(0.1, 2.0))
    u = uniform(2, 0, range(32), 2)
    out = op(gray, u).numpy()
    x = f32(gray)
    for i in range(32):
        if u[i, 0] < 0.5:
            np.testing.assert_allclose(out[i], blur_np(x[i], 0.1 + 1.9 * u[i, 1], 3), atol=1e-5)
        else:
            np.testing.assert_array_equal(out[i], x[i])


def test_solarize_matches_numpy(rgb):
    x = f32(rgb)
    out = solarize(torch.from_numpy(x), 0.5).numpy()
    np.testing.assert_allclose(out, np.where(x >= 0.5, 1 - x, x), atol=1e-7)
    op = RandomSolarize(p=0.2)
    u = uniform(0, 3, range(32), 1)
    rnd = op(rgb, u).numpy()
    for i in range(32):
        np.testing.assert_allclose(rnd[i], out[i] if u[i, 0] < 0.2 else x[i], atol=1e-7)


# ---------------------------------------------------------------- affine, rotation


SMALL = np.arange(20, dtype=np.float32).reshape(1, 1, 4, 5) / 20


@pytest.mark.parametrize(
    "fill_mode,pad_mode", [("nearest", "edge"), ("reflect", "symmetric"), ("constant", "constant")]
)
def test_affine_shift_fill_modes_on_known_image(fill_mode, pad_mode):
    # content moves 2 rows down and 1 column left: out[r, c] = in[r - 2, c + 1]
    m = affine_matrices(4, 5, np.zeros(1), shift=np.array([[2.0, -1.0]]))
    out = warp_affine(torch.from_numpy(SMALL), m, fill_mode, cval=0.9).numpy()[0, 0]
    kw = {"constant_values": 0.9} if pad_mode == "constant" else {}
    padded = np.pad(SMALL[0, 0], 3, mode=pad_mode, **kw)
    ref = padded[3 - 2 : 3 - 2 + 4, 3 + 1 : 3 + 1 + 5]
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_rotation_by_90_degrees_is_rot90(gray):
    x = gray[:3].float() / 255
    out = rotate(x, np.array([90.0, 180.0, -90.0]))
    for i, k in enumerate((1, 2, -1)):
        np.testing.assert_allclose(
            out[i].numpy(), np.rot90(x[i].numpy(), k, axes=(1, 2)), atol=1e-5
        )


def test_affine_zoom_and_shear_matrices():
    zoom = affine_matrices(9, 9, np.zeros(1), zoom=np.array([[0.5, 2.0]]))[0]
    c = np.array([4.0, 4.0])
    for d in (np.array([2.0, 1.0]), np.array([-1.0, 3.0])):
        np.testing.assert_allclose(zoom @ np.append(c + d, 1), c + np.array([0.5, 2.0]) * d)
    shear = affine_matrices(9, 9, np.zeros(1), shear=np.array([30.0]))[0]
    d = np.array([1.0, 2.0])
    expect = np.array([[1, -np.sin(np.pi / 6)], [0, np.cos(np.pi / 6)]]) @ d
    np.testing.assert_allclose(shear @ np.append(c + d, 1), c + expect)


def test_random_affine_and_rotation_parameters_and_fill(gray):
    op = RandomAffine(rotation_range=20, width_shift_range=0.1, height_shift_range=0.2,
                      shear_range=10, zoom_range=0.2, fill_mode="reflect")  # fmt: skip
    u = uniform(0, 0, range(2000), 6)
    m = op.matrices(u, 28, 28)
    # the linear part's determinant is zoom_row * zoom_col * cos(shear)
    det = np.linalg.det(m[:, :, :2])
    zoom = (0.8 + 0.4 * u[:, 4]) * (0.8 + 0.4 * u[:, 5])
    np.testing.assert_allclose(det, zoom * np.cos(np.deg2rad(10 * (2 * u[:, 3] - 1))), rtol=1e-9)
    out = op(gray, u[:32])
    assert out.shape == (32, 1, 28, 28) and out.min() >= 0 and out.max() <= 1
    rot = RandomRotation(degrees=(90.0, 90.0))
    np.testing.assert_allclose(
        rot(gray[:2], uniform(0, 0, range(2), 1)).numpy(),
        np.rot90(f32(gray[:2]), 1, axes=(2, 3)),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="fill_mode"):
        RandomAffine(fill_mode="wrap")


# ---------------------------------------------------------------- erasing, normalisation


def test_erase_boxes_and_values(rgb):
    x = rgb[:3].float() / 255
    boxes = np.array([[0, 0, 5, 7], [20, 25, 8, 8], [3, 3, 0, 4]])
    out = erase(x, boxes, 0.25).numpy()
    for i, (top, left, h, w) in enumerate(boxes):
        ref = x[i].numpy().copy()
        ref[:, top : top + h, left : left + w] = 0.25
        np.testing.assert_array_equal(out[i], ref)


def test_random_erasing_box_rule():
    u = uniform(0, 0, range(5000), 22)
    boxes = sample_erase_boxes(u, 28, 28)
    top, left, h, w = boxes.T
    ok = h > 0
    assert ok.mean() > 0.9
    area = h[ok] * w[ok] / 784
    assert area.min() >= 0.015 and area.max() <= 0.36  # (0.02, 0.33) up to pixel rounding
    assert (top + h <= 28).all() and (left + w <= 28).all() and (h < 28).all() and (w < 28).all()
    op = RandomErasing(p=0.5, value=1.0)
    x = torch.zeros(64, 1, 28, 28)
    uu = uniform(0, 0, range(64), op.num_uniforms)
    erased = op(x, uu).flatten(1).sum(1).numpy()
    expect = np.where(
        uu[:, 0] < 0.5, (lambda b: b[:, 2] * b[:, 3])(sample_erase_boxes(uu[:, 1:], 28, 28)), 0
    )
    np.testing.assert_array_equal(erased, expect)


def test_cutout_square_is_clipped_at_border():
    op = Cutout(length=10)
    u = np.array([[0.0, 0.0, 0.0], [0.0, 0.5, 0.5]])  # centres (0, 0) and (14, 14)
    out = op(torch.ones(2, 1, 28, 28), u)
    assert out[0].sum() == 28 * 28 - 5 * 5 and out[1].sum() == 28 * 28 - 10 * 10
    assert (out[1, 0, 9:19, 9:19] == 0).all()


def test_normalize_rgba_keeps_alpha_and_checks_length(rgba):
    x = rgba.float() / 255
    out = normalize(x, (0.5, 0.4, 0.3), (0.2, 0.25, 0.5))
    ref = (x[:, :3].numpy() - np.array([0.5, 0.4, 0.3])[:, None, None]) / np.array(
        [0.2, 0.25, 0.5]
    )[:, None, None]
    np.testing.assert_allclose(out[:, :3].numpy(), ref, atol=1e-6)
    with pytest.raises(ValueError, match="need 4 means"):
        normalize(x, (0.5, 0.5), (0.2, 0.2))
