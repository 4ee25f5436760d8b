"""Correctness of view randomness on the per-sample path (issue 3's required tests)."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, get_worker_info

from ssl_data import SimCLRView, ViewDataset, collate_views, uniform
from ssl_data.datasets.image_folder import ImageFolder
from ssl_data.transforms.random_resized_crop import (
    CROP_UNIFORMS,
    RandomResizedCrop,
    resized_crop_flip,
    sample_crop_boxes,
)

# Crop and flip only, identity normalisation: a view is exactly its crop of the image.
CROP_ONLY = {"jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": (0.0, 0.0),
             "solarize_p": (0.0, 0.0), "mean": (0.0,) * 3, "std": (1.0,) * 3}  # fmt: skip


class CropRecorder:
    """A view generator that also returns the crop parameters view 0 drew and who drew them.

    The parameters are read out of the same counter-based uniforms the view's pipeline uses
    (stream 0 = view 0; columns 0..21 the box, 22 the flip coin), as fractions of the image.
    """

    def __init__(self, view: SimCLRView):
        self.view = view

    def __call__(self, images, indices, epoch):
        a, b = self.view(images, indices, epoch)
        h, w = images.shape[-2:]
        u = uniform(self.view.seed, epoch, indices, CROP_UNIFORMS + 1, stream=0)
        boxes = sample_crop_boxes(u[:, :CROP_UNIFORMS], h, w, self.view.scale, self.view.ratio)
        params = np.concatenate([boxes / [h, w, h, w], u[:, CROP_UNIFORMS:] < self.view.flip_p], 1)
        worker = get_worker_info().id if get_worker_info() else -1
        return [a, b, torch.from_numpy(params), torch.tensor([worker])]


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory, fashion):
    """96 real Fashion-MNIST images as RGB PNG files, in three different sizes."""
    root = tmp_path_factory.mktemp("pngs")
    for i, img in enumerate(fashion):
        h, w = [(28, 28), (36, 30), (24, 40)][i % 3]
        rgb = Image.fromarray(img).convert("RGB").resize((w, h), Image.Resampling.BILINEAR)
        rgb.save(root / f"{i:03d}.png")
    return ImageFolder(root, labelled=False)


def test_four_workers_draw_distinct_crops_and_new_ones_each_epoch(png_folder):
    view = SimCLRView(size=12, seed=7, flip_p=0.5, **CROP_ONLY)
    data = ViewDataset(png_folder, CropRecorder(view))
    loader = DataLoader(data, batch_size=8, num_workers=4, collate_fn=collate_views,
                        multiprocessing_context="fork")  # fmt: skip
    epochs = {}
    for epoch in (1, 2):
        data.set_epoch(epoch)
        a, _, params, workers = (torch.cat(t) for t in zip(*list(loader), strict=True))
        epochs[epoch] = params.numpy()
        assert set(workers.tolist()) == {0, 1, 2, 3}  # every worker built some samples
        assert len(np.unique(epochs[epoch].round(12), axis=0)) == len(png_folder)
        # The recorded parameters are the ones the pixels were cut with.
        for i in (0, 1, 2, 50, 95):
            image = png_folder[i][0][None].float() / 255
            h, w = image.shape[-2:]
            box = epochs[epoch][i : i + 1, :4] * [h, w, h, w]
            ref = resized_crop_flip(image, box, epochs[epoch][i : i + 1, 4] > 0.5, (12, 12))
            np.testing.assert_allclose(a[i : i + 1].numpy(), ref.numpy(), rtol=0, atol=1e-5)
    # Epoch 2 moves every sample's box.
    moved = np.abs(epochs[1][:, :4] - epochs[2][:, :4]).max(axis=1)
    assert (moved > 1e-6).all()


@pytest.fixture(scope="module")
def odd_sizes(tmp_path_factory, fashion):
    """A 3 x 100 x 80 image (three real images as R, G, B, resized) and a 3 x 1 x 1 one."""
    root = tmp_path_factory.mktemp("odd")
    big = np.stack([np.asarray(Image.fromarray(fashion[k]).resize((80, 100))) for k in range(3)], 2)
    Image.fromarray(big).save(root / "a_big.png")
    pixel = np.stack([fashion[k][14:15, 14:15] for k in range(3)], 2)  # centre pixels of 3 images
    Image.fromarray(pixel).save(root / "b_pixel.png")
    return ImageFolder(root, labelled=False)


def test_random_resized_crop_224_from_large_and_single_pixel_images(odd_sizes):
    big, pixel = odd_sizes[0][0], odd_sizes[1][0]
    assert big.shape == (3, 100, 80) and pixel.shape == (3, 1, 1) and pixel.sum() > 0
    view = SimCLRView(size=224, seed=3, **CROP_ONLY)
    data = ViewDataset(odd_sizes, view)
    out = collate_views([data[0], data[1]])
    assert [tuple(v.shape) for v in out] == [(2, 3, 224, 224)] * 2
    # A single pixel crops to itself everywhere.
    expected = pixel.float().div(255).view(3, 1, 1).expand(3, 224, 224).numpy()
    for v in out:
        np.testing.assert_allclose(v[1].numpy(), expected, rtol=0, atol=1e-6)
        assert v[0].std() > 0.05  # the large image's crop is not flat


def test_uint8_and_float_inputs_give_the_same_crops(odd_sizes):
    crop = RandomResizedCrop(size=224, hflip_p=0.5)
    for image in (odd_sizes[0][0], odd_sizes[1][0]):
        u = uniform(11, 0, [0, 1, 2, 3], crop.num_uniforms)
        as_uint8 = crop(image[None].expand(4, -1, -1, -1), u)
        as_float = crop(image[None].float().div(255).expand(4, -1, -1, -1), u)
        assert as_uint8.shape == (4, 3, 224, 224)
        np.testing.assert_allclose(as_uint8.numpy(), as_float.numpy(), rtol=0, atol=1 / 255)
    # Same through the per-sample path: the folder's uint8 images vs the same images as float.
    view = SimCLRView(size=224, seed=4, **CROP_ONLY)
    floats = [odd_sizes[i][0].float() / 255 for i in range(2)]
    for i in range(2):
        a = ViewDataset(odd_sizes, view)[i]
        b = ViewDataset(floats, view)[i]
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=0, atol=1 / 255)
