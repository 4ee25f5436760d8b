import itertools

import numpy as np
import pytest
import torch

from ssl_data import (
    BarlowTwinsView,
    BYOLView,
    JigsawView,
    MaskedPatchView,
    MoCoV2View,
    MultiCropView,
    RotationView,
    SimCLRView,
    VICRegView,
    jigsaw_permutations,
    uniform,
)
from ssl_data.transforms import gaussian_blur, resized_crop_flip, sample_crop_boxes

GRAY = {"mean": (0.0,), "std": (1.0,)}
RGB = {"mean": (0.0,) * 3, "std": (1.0,) * 3}


def test_paper_defaults():
    moco = MoCoV2View()
    assert (moco.size, moco.scale, moco.saturation, moco.blur_p, moco.solarize_p) == (
        224,
        (0.2, 1.0),
        0.4,
        (0.5, 0.5),
        (0.0, 0.0),
    )
    for cls in (BYOLView, BarlowTwinsView):
        v = cls()
        assert (v.scale, v.brightness, v.contrast, v.saturation, v.hue) == (
            (0.08, 1.0),
            0.4,
            0.4,
            0.2,
            0.1,
        )
        assert (v.jitter_p, v.grayscale_p, v.blur_p, v.solarize_p) == (
            0.8,
            0.2,
            (1.0, 0.1),
            (0.0, 0.2),
        )
    vic = VICRegView()
    assert (vic.blur_p, vic.solarize_p, vic.saturation) == ((0.5, 0.5), (0.1, 0.1), 0.2)
    mc = MultiCropView()
    assert (mc.global_size, mc.local_size, mc.global_scale, mc.local_scale) == (
        224,
        96,
        (0.4, 1.0),
        (0.05, 0.4),
    )
    mae = MaskedPatchView()
    assert (mae.mask_ratio, mae.patch_size, mae.num_patches, mae.num_masked) == (0.75, 16, 196, 147)
    assert JigsawView().num_permutations == 1000


def test_simclr_keeps_its_crop_and_flip_columns(rgb):
    # SimCLRView's crop/flip parameters are still columns 0..22 of stream `view`.
    view = SimCLRView(size=16, jitter_p=0.0, grayscale_p=0.0, seed=3, **RGB)
    idx = np.arange(len(rgb))
    a, b = view(rgb, idx, epoch=2)
    for v, out in enumerate((a, b)):
        u = uniform(3, 2, idx, 23, stream=v)
        boxes = sample_crop_boxes(u[:, :22], 28, 28)
        ref = resized_crop_flip(rgb.float() / 255, boxes, u[:, 22] < 0.5, (16, 16))
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_byol_views_are_asymmetric(gray):
    # Whole-image crops without flip/jitter: view 0 is the image, view 1 its solarisation.
    view = BYOLView(size=28, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0,
                    blur_p=(0.0, 0.0), solarize_p=(0.0, 1.0), **GRAY)  # fmt: skip
    a, b = view(gray, np.arange(len(gray)), 0)
    x = gray.float() / 255
    torch.testing.assert_close(a, x, rtol=0, atol=1e-5)
    torch.testing.assert_close(b, torch.where(x >= 0.5, 1 - x, x), rtol=0, atol=1e-5)
    blurred = BYOLView(size=28, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0,
                       solarize_p=(0.0, 0.0), blur_p=(1.0, 0.0), **GRAY)  # fmt: skip
    c, d = blurred(gray, np.arange(len(gray)), 0)
    torch.testing.assert_close(d, x, rtol=0, atol=1e-5)
    # view 0 is always blurred, with sigma from its stream's blur columns (after crop, jitter, gray)
    u = uniform(0, 0, np.arange(len(gray)), 32, stream=0)
    ref = gaussian_blur(x, 0.1 + 1.9 * u[:, 31], 3)
    torch.testing.assert_close(c, ref, rtol=0, atol=1e-5)
    assert not torch.allclose(c, x)


@pytest.mark.parametrize("cls", [MoCoV2View, BYOLView, VICRegView, BarlowTwinsView])
def test_two_view_methods_on_rgb(cls, rgb):
    a, b = cls(size=24, **RGB)(rgb[:8], np.arange(8), 0)
    assert a.shape == b.shape == (8, 3, 24, 24) and a.dtype == torch.float32
    assert a.min() >= -1e-6 and a.max() <= 1 + 1e-6
    assert ((a - b).abs().flatten(1).mean(1) > 1e-3).all()


def test_multi_crop_sizes_and_count(rgb):
    crops = MultiCropView(num_local=3)(rgb[:2], [0, 1], 0)
    assert [tuple(c.shape) for c in crops] == [(2, 3, 224, 224)] * 2 + [(2, 3, 96, 96)] * 3
    small = MultiCropView(global_size=28, local_size=12, num_local=5, **RGB)(rgb[:4], range(4), 1)
    assert len(small) == 7
    assert all(c.shape == (4, 3, 28, 28) for c in small[:2])
    assert all(c.shape == (4, 3, 12, 12) for c in small[2:])
    for a, b in itertools.combinations(small[2:], 2):
        assert not torch.allclose(a, b)


def test_multi_crop_local_scale_is_smaller(gray):
    # a local crop covers at most 40% of the area: its pixel spread is a small part of the image
    mc = MultiCropView(global_size=8, local_size=8, num_local=1, jitter_p=0.0, **GRAY)
    u_global = uniform(0, 0, range(2000), 23, stream=0)
    u_local = uniform(0, 0, range(2000), 23, stream=2)
    g = mc.pipeline(0).geometric.ops[0].boxes(u_global, 28, 28)
    loc = mc.pipeline(2).geometric.ops[0].boxes(u_local, 28, 28)
    area_g, area_l = g[:, 2] * g[:, 3] / 784, loc[:, 2] * loc[:, 3] / 784
    assert area_g.min() >= 0.4 - 1e-9 and area_l.max() <= 0.4 + 1e-9 and area_l.min() >= 0.05 - 1e-9


@pytest.mark.parametrize("ratio,expected", [(0.75, 37), (0.6, 29), (0.0, 0), (1.0, 49)])
def test_masked_patch_counts_are_exact(gray, ratio, expected):
    view = MaskedPatchView(size=28, patch_size=4, mask_ratio=ratio, **GRAY)
    image, mask = view(gray, np.arange(len(gray)), 0)
    assert image.shape == (32, 1, 28, 28) and mask.shape == (32, 49) and mask.dtype == torch.bool
    np.testing.assert_array_equal(mask.sum(1).numpy(), np.full(32, expected))
    if 0 < expected < 49:
        assert len({tuple(m) for m in mask.numpy()}) == 32  # every sample has its own mask
        _, other = view(gray, np.arange(len(gray)), 1)
        assert not torch.equal(mask, other)


def test_masked_patch_positions_are_uniform(gray):
    view = MaskedPatchView(size=28, patch_size=7, mask_ratio=0.5, **GRAY)
    x = gray[:1].expand(4000, -1, -1, -1)
    _, mask = view(x, np.arange(4000), 0)
    freq = mask.float().mean(0).numpy()  # 8 of 16 masked: each patch masked half the time
    np.testing.assert_allclose(freq, 0.5, atol=0.03)


def test_rotation_labels_match_np_rot90(gray):
    images, labels = RotationView(**GRAY)(gray[:5], np.arange(5), 0)
    assert images.shape == (20, 1, 28, 28) and labels.dtype == torch.int64
    np.testing.assert_array_equal(labels.numpy(), np.tile([0, 1, 2, 3], 5))
    x = gray[:5].numpy() / 255.0
    for b in range(5):
        for r in range(4):
            ref = np.rot90(x[b], r, axes=(1, 2))
            np.testing.assert_allclose(images[4 * b + r].numpy(), ref, atol=1e-6)
    cropped, _ = RotationView(size=16, flip_p=0.5, **GRAY)(gray[:2], [0, 1], 0)
    assert cropped.shape == (8, 1, 16, 16)
    with pytest.raises(ValueError, match="square"):
        RotationView(**GRAY)(gray[:, :, :20], range(32), 0)


def test_jigsaw_tiles_reassemble_under_inverse_permutation(rgb):
    x = rgb[:6, :, :27, :27]
    view = JigsawView(size=27, tile_size=9, num_permutations=30, scale=(1.0, 1.0),
                      normalize_tiles=False, **RGB)  # fmt: skip
    tiles, perm_index = view(x, np.arange(6), 0)
    assert tiles.shape == (6, 9, 3, 9, 9) and perm_index.dtype == torch.int64
    perms = jigsaw_permutations(30, 0)
    image = x.float().numpy() / 255
    for b in range(6):
        perm = perms[perm_index[b]]
        cells = tiles[b].numpy()[np.argsort(perm)]  # cell j of the image, row-major
        grid = cells.reshape(3, 3, 3, 9, 9).transpose(2, 0, 3, 1, 4).reshape(3, 27, 27)
        np.testing.assert_allclose(grid, image[b], atol=1e-5)
    assert len(set(perm_index.tolist())) > 1


def test_jigsaw_tiles_lie_inside_their_cells_and_are_standardised(gray):
    tiles, _ = JigsawView(size=30, tile_size=8, num_permutations=10)(gray[:4], range(4), 0)
    assert tiles.shape == (4, 9, 1, 8, 8)
    flat = tiles.flatten(-2)
    nonflat = flat.std(-1, unbiased=False) > 0.1
    torch.testing.assert_close(
        flat.mean(-1)[nonflat], torch.zeros(int(nonflat.sum())), atol=1e-4, rtol=0
    )


def test_jigsaw_permutations_greedy_maximal_hamming():
    perms = jigsaw_permutations(12, seed=0)
    assert perms.shape == (12, 9) and perms.dtype == np.int64
    assert all(sorted(p) == list(range(9)) for p in perms.tolist())
    assert len({tuple(p) for p in perms.tolist()}) == 12
    np.testing.assert_array_equal(perms[0], np.arange(9))  # candidate 0: the identity
    # row 1: the lexicographically first permutation at Hamming distance 9 from the identity
    first_derangement = next(
        p for p in itertools.permutations(range(9)) if all(p[i] != i for i in range(9))
    )
    np.testing.assert_array_equal(perms[1], first_derangement)
    # every row k maximises the summed Hamming distance to rows 0..k-1 over the other candidates
    every = np.array(list(itertools.permutations(range(9))), dtype=np.int8)
    summed = np.zeros(len(every), dtype=np.int64)
    chosen = np.zeros(len(every), dtype=bool)
    for k in range(1, 12):
        previous = perms[k - 1].astype(np.int8)
        summed += (every != previous).sum(1)
        chosen |= (every == previous).all(1)
        mine = int(sum(np.count_nonzero(perms[k] != perms[j]) for j in range(k)))
        assert mine == summed[~chosen].max()
    np.testing.assert_array_equal(jigsaw_permutations(12, seed=0), perms)  # deterministic
    other = jigsaw_permutations(12, seed=1)
    np.testing.assert_array_equal(other[0], [0, 1, 2, 3, 4, 5, 6, 8, 7])
    with pytest.raises(ValueError, match="n must be"):
        jigsaw_permutations(0)
