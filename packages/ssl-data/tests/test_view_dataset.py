import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ssl_data import (
    BYOLView,
    JigsawView,
    MaskedPatchView,
    MultiCropView,
    RandAugment,
    RotationView,
    SimCLRView,
    TrivialAugment,
    ViewDataset,
    collate_views,
)

RGB = {"mean": (0.5, 0.4, 0.3), "std": (0.2, 0.25, 0.3)}


def coordinate_images(n: int) -> torch.Tensor:
    """``n`` copies of a 3 x 40 x 40 image whose channels are its row and column coordinates."""
    r = torch.arange(40, dtype=torch.float32).view(40, 1).expand(40, 40) / 39
    c = torch.arange(40, dtype=torch.float32).view(1, 40).expand(40, 40) / 39
    return torch.stack([r, c, r * c]).expand(n, 3, 40, 40).contiguous()


def test_four_workers_give_distinct_crops_per_sample_and_new_ones_per_epoch():
    # Identical images: any difference between two outputs comes from the crop parameters.
    n = 240
    view = SimCLRView(size=8, jitter_p=0.0, grayscale_p=0.0, flip_p=0.0, mean=(0.0,) * 3,
                      std=(1.0,) * 3, seed=11)  # fmt: skip
    data = ViewDataset(coordinate_images(n), view, epoch=1)
    loader = DataLoader(data, batch_size=10, num_workers=4, collate_fn=collate_views)
    epoch1 = [torch.cat(t) for t in zip(*list(loader), strict=True)]
    data.set_epoch(2)
    epoch2 = [torch.cat(t) for t in zip(*list(loader), strict=True)]
    for views in (epoch1, epoch2):
        flat = views[0].flatten(1)
        gaps = torch.cdist(flat, flat) + torch.eye(n) * 1e9
        assert gaps.min() > 1e-4  # no two samples share crop parameters
    per_sample = (epoch1[0] - epoch2[0]).flatten(1).abs().amax(1)
    assert (per_sample > 1e-4).all()  # every sample gets a new crop in epoch 2
    batched = view(coordinate_images(n), np.arange(n), 1)
    for a, b in zip(batched, epoch1, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SimCLRView(size=20, **RGB, policy=TrivialAugment()),
        lambda: BYOLView(size=16, **RGB, policy=RandAugment(num_ops=2, magnitude=9)),
        lambda: MultiCropView(global_size=20, local_size=10, num_local=2, **RGB),
        lambda: MaskedPatchView(size=20, patch_size=4, **RGB),
        lambda: RotationView(size=12, flip_p=0.5, **RGB),
        lambda: JigsawView(size=24, tile_size=6, num_permutations=20),
    ],
    ids=["simclr", "byol", "multicrop", "masked", "rotation", "jigsaw"],
)
def test_batched_equals_per_sample_path(make, rgb):
    view = make()
    idx = np.arange(5, 17)
    batched = view(rgb[idx], idx, 3)
    data = ViewDataset(rgb, view, epoch=3)
    per_sample = collate_views([data[int(i)] for i in idx])
    assert len(batched) == len(per_sample)
    for a, b in zip(batched, per_sample, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        if a.dtype.is_floating_point:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        else:
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_view_dataset_accepts_numpy_and_checks_index(fashion):
    data = ViewDataset(fashion[:10], SimCLRView(size=12))
    assert len(data) == 10
    a, b = data[3]
    assert a.shape == b.shape == (1, 1, 12, 12)
    torch.testing.assert_close(data[-1][0], data[9][0])
    with pytest.raises(IndexError, match="out of range"):
        data[10]
