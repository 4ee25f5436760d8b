"""The batched path's fast kernels give the reference values: hue at ties, rows left alone stay
bit-exact, and chunked views equal one pass over the batch."""

import colorsys

import numpy as np
import torch

import ssl_data.views.pipeline as pipeline
from ssl_data import SimCLRView, uniform
from ssl_data.transforms import ColorJitter, RandomGrayscale, adjust_hue


def test_hue_at_ties_gray_and_extremes_matches_colorsys():
    # Every tie pattern of the maximum and minimum channel, gray, black, white and pure colours.
    pixels = np.array(
        [[0.8, 0.8, 0.2], [0.8, 0.2, 0.8], [0.2, 0.8, 0.8], [0.8, 0.2, 0.2], [0.2, 0.8, 0.2],
         [0.2, 0.2, 0.8], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0],
         [0.3, 0.6, 0.9], [0.9, 0.6, 0.3], [0.6, 0.3, 0.9], [1.0, 0.5, 0.0]],
        dtype=np.float32,
    )  # fmt: skip
    shifts = np.array([-0.5, -0.31, -1 / 6, 0.0, 0.05, 1 / 3, 0.5])
    x = torch.from_numpy(np.tile(pixels.T[None, :, None, :], (len(shifts), 1, 1, 1)))
    out = adjust_hue(x, shifts).numpy()
    for i, s in enumerate(shifts):
        for j, p in enumerate(pixels):
            h, sat, v = colorsys.rgb_to_hsv(*p)
            ref = colorsys.hsv_to_rgb((h + s) % 1.0, sat, v)
            np.testing.assert_allclose(out[i, :, 0, j], ref, atol=1e-6)


def test_jitter_leaves_unselected_rows_bit_exact(rgb):
    x = rgb.float() / 255
    op = ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=0.5)
    u = uniform(5, 0, range(len(x)), op.num_uniforms)
    apply = op.parameters(u)[0]
    assert 0 < apply.sum() < len(x)
    out = op(x, u)
    torch.testing.assert_close(out[~apply], x[~apply], rtol=0, atol=0)
    assert (out[apply] - x[apply]).abs().flatten(1).amax(1).min() > 1e-3


def test_random_grayscale_rows_are_luma_or_untouched(rgb):
    x = rgb.float() / 255
    u = uniform(1, 0, range(len(x)), 1)
    chosen = u[:, 0] < 0.4
    assert 0 < chosen.sum() < len(x)
    out = RandomGrayscale(0.4)(x, u)
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for c in range(3):
        torch.testing.assert_close(out[chosen, c], luma[chosen], rtol=0, atol=1e-6)
    torch.testing.assert_close(out[~chosen], x[~chosen], rtol=0, atol=0)


def test_chunked_views_equal_one_pass(rgb, monkeypatch):
    view = SimCLRView(size=20, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), seed=4)
    idx = np.arange(len(rgb))
    whole = view(rgb, idx, epoch=1)
    monkeypatch.setattr(pipeline, "CHUNK_VALUES", 3 * 28 * 28 * 5)  # 5 images per chunk
    assert pipeline.chunk_rows(rgb) == 5
    chunked = view(rgb, idx, epoch=1)
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
