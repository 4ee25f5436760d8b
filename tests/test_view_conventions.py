"""ssl-data's views and ssl-models' methods agree on the conventions they share (the two packages
cannot import each other, so the agreement is checked here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssl_data import jigsaw_permutations as data_permutations
from ssl_data import load_fashion_mnist
from ssl_data.datasets import bundled_sample_root
from ssl_data.views import JigsawView, MaskedPatchView, RotationView
from ssl_models import jigsaw_permutations as model_permutations
from ssl_models.methods.rotation import make_rotations


@pytest.mark.parametrize("n,seed", [(100, 0), (30, 7), (1000, 3)])
def test_jigsaw_permutation_sets_are_identical(n, seed):
    np.testing.assert_array_equal(data_permutations(n, seed), model_permutations(n, 9, seed))


@pytest.fixture(scope="module")
def images():
    x, _ = load_fashion_mnist("train", root=bundled_sample_root())
    return torch.from_numpy(x[:6].copy())


def test_rotation_labels_mean_the_same_rotation(images):
    rotated, labels = RotationView(mean=(0.0,), std=(1.0,))(images, np.arange(6), epoch=0)
    ref, ref_labels = make_rotations(images.float().unsqueeze(1) / 255)
    for k in range(4):
        ours = rotated[labels == k]
        theirs = ref[ref_labels == k]
        assert ours.shape == theirs.shape == (6, 1, 28, 28)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_jigsaw_tiles_follow_the_models_convention(images):
    # No gaps, the whole image as the crop: placing tile i at grid cell perm[i] (ssl-models'
    # convention) must rebuild the resized image exactly.
    view = JigsawView(size=27, tile_size=9, num_permutations=100, scale=(1.0, 1.0), ratio=(1.0, 1.0),
                      normalize_tiles=False, mean=(0.0,), std=(1.0,))  # fmt: skip
    tiles, index = view(images, np.arange(6), epoch=0)
    perms = model_permutations(100, 9, 0)
    assert tiles.shape == (6, 9, 1, 9, 9) and index.shape == (6,)
    assert len(set(index.tolist())) > 1
    expected = torch.nn.functional.interpolate(
        images.float().unsqueeze(1) / 255, size=(27, 27), mode="bilinear", align_corners=False
    )
    for b in range(6):
        grid = torch.zeros(1, 27, 27)
        for i, cell in enumerate(perms[int(index[b])]):
            r, c = divmod(int(cell), 3)
            grid[:, r * 9 : (r + 1) * 9, c * 9 : (c + 1) * 9] = tiles[b, i]
        torch.testing.assert_close(grid, expected[b], atol=1e-4, rtol=0)


def test_mae_mask_marks_masked_patches_true(images):
    _, mask = MaskedPatchView(size=28, patch_size=4, mask_ratio=0.75, mean=(0.0,), std=(1.0,))(
        images, np.arange(6), epoch=0
    )
    assert mask.dtype == torch.bool and mask.shape == (6, 49)
    assert (mask.sum(1) == round(0.75 * 49)).all()
