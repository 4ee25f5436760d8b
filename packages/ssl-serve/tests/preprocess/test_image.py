"""Server image preprocessing against independent numpy computations on real images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from serve_helpers import MEAN, STD, png_bytes, reference_preprocess

from ssl_serve.bundle import ImagePreprocessing
from ssl_serve.errors import InvalidInputError
from ssl_serve.preprocess import normalize_pixels, preprocess_image, preprocess_images

SPEC = ImagePreprocessing((28, 28), 1, "bilinear", 1 / 255, (MEAN,), (STD,))
ONE_LEVEL = 1 / 255 / STD  # one uint8 grey level after normalisation


def _upsample2x_bilinear(image: np.ndarray) -> np.ndarray:
    """Half-pixel-centre bilinear 2x upsampling with edge clamping, in float64."""
    n = image.shape[0]
    x = np.arange(2 * n) / 2 - 0.25
    x0 = np.floor(x).astype(int)
    w = x - x0
    lo, hi = np.clip(x0, 0, n - 1), np.clip(x0 + 1, 0, n - 1)
    img = image.astype(np.float64)
    rows = img[lo] * (1 - w)[:, None] + img[hi] * w[:, None]
    return rows[:, lo] * (1 - w)[None] + rows[:, hi] * w[None]


def test_grayscale_png_matches_numpy(fashion_images: np.ndarray) -> None:
    batch = preprocess_images([png_bytes(img) for img in fashion_images[:8]], SPEC)
    assert batch.shape == (8, 1, 28, 28) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, reference_preprocess(fashion_images[:8]), atol=1e-6)


def test_rgb_png_of_grey_pixels_equals_grayscale(fashion_images: np.ndarray) -> None:
    img = fashion_images[0]
    rgb = preprocess_image(png_bytes(np.stack([img] * 3, axis=-1)), SPEC)
    np.testing.assert_array_equal(rgb, preprocess_image(png_bytes(img), SPEC))


def test_rgb_png_converts_with_itu_601_luma(fashion_images: np.ndarray) -> None:
    rgb = np.stack(list(fashion_images[:3]), axis=-1)  # three real images as R, G, B
    out = preprocess_image(png_bytes(rgb), SPEC)
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    expected = (luma / 255 - MEAN) / STD
    np.testing.assert_allclose(out[0], expected, atol=ONE_LEVEL * 0.51)


def test_smaller_rgb_png_is_resized_bilinearly(fashion_images: np.ndarray) -> None:
    small = fashion_images[1][::2, ::2]  # 14x14 real image
    out = preprocess_image(png_bytes(np.stack([small] * 3, axis=-1)), SPEC)
    assert out.shape == (1, 28, 28)
    expected = (_upsample2x_bilinear(small) / 255 - MEAN) / STD
    np.testing.assert_allclose(out[0], expected, atol=ONE_LEVEL + 1e-6)


def test_jpeg_decodes_close_to_the_original(fashion_images: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(fashion_images[2]).save(buf, format="JPEG", quality=95)
    out = preprocess_image(buf.getvalue(), SPEC)
    reference = reference_preprocess(fashion_images[2:3])[0]
    assert np.abs(out - reference).mean() < 3 * ONE_LEVEL


def test_normalize_pixels_matches_numpy(fashion_images: np.ndarray) -> None:
    out = normalize_pixels(fashion_images[:4, :, :, None], SPEC)
    np.testing.assert_allclose(out, reference_preprocess(fashion_images[:4]), atol=1e-6)
    with pytest.raises(InvalidInputError, match=r"pixels must be \(N, 28, 28, 1\)"):
        normalize_pixels(fashion_images[:4], SPEC)


def test_undecodable_images_name_their_index(fashion_images: np.ndarray) -> None:
    good = png_bytes(fashion_images[0])
    gif = io.BytesIO()
    Image.fromarray(fashion_images[0]).save(gif, format="GIF")
    cases = {
        b"not an image": "not a PNG or JPEG file",
        good[: len(good) // 2]: "cannot decode image",
        b"": "image is empty",
        gif.getvalue(): "not a PNG or JPEG file",
    }
    for bad, message in cases.items():
        with pytest.raises(InvalidInputError, match=message) as info:
            preprocess_images([good, good, bad], SPEC)
        assert info.value.index == 2
        assert str(info.value).startswith("input 2: ")


def test_images_above_the_pixel_limit_are_refused(fashion_images: np.ndarray) -> None:
    with pytest.raises(InvalidInputError, match="28x28 pixels, more than the 100"):
        preprocess_image(png_bytes(fashion_images[0]), SPEC, index=0, max_pixels=100)
