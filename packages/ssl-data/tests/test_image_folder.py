import io
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ssl_data import CorruptFileError, DatasetNotFoundError, SimCLRView, ViewDataset, collate_views
from ssl_data.datasets.image_decode import decode_image, probe_image
from ssl_data.datasets.image_folder import UNLABELLED, ImageFolder

CLASSES = ["Bag", "Coat", "Sandal"]  # Fashion-MNIST names of labels 8, 4, 5


@pytest.fixture()
def labelled_folder(tmp_path, fashion):
    """12 real images as PNG: 4 per class folder, one nested deeper; labels 0..2 by class name."""
    root = tmp_path / "labelled"
    expected = []  # (relative path, label, image)
    for label, name in enumerate(CLASSES):
        for k in range(4):
            img = fashion[label * 4 + k]
            rel = f"{name}/{'deep/' if k == 3 else ''}{k}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / rel)
            expected.append((rel, label, img))
    return root, sorted(expected, key=lambda e: e[0])


def test_labelled_folder_decodes_real_pngs_with_sorted_class_ids(labelled_folder):
    root, expected = labelled_folder
    data = ImageFolder(root, mode="L")
    assert data.classes == tuple(CLASSES) and data.class_to_idx == {
        "Bag": 0,
        "Coat": 1,
        "Sandal": 2,
    }
    assert [p.relative_to(root).as_posix() for p in data.paths] == [e[0] for e in expected]
    assert len(data) == 12 and data.corrupt.count == 0
    np.testing.assert_array_equal(data.sizes, np.full((12, 2), 28))
    for i, (_, label, img) in enumerate(expected):
        image, y = data[i]
        assert image.dtype == torch.uint8 and image.shape == (1, 28, 28)
        np.testing.assert_array_equal(image[0].numpy(), img)  # PNG is lossless
        assert y == label
    rgb, _ = ImageFolder(root, mode="RGB")[0]
    rgba, _ = ImageFolder(root, mode="RGBA")[0]
    assert rgb.shape == (3, 28, 28) and rgba.shape == (4, 28, 28)
    np.testing.assert_array_equal(rgb.numpy(), np.repeat(expected[0][2][None], 3, 0))
    assert (rgba[3] == 255).all() and torch.equal(rgba[:3], rgb)
    assert len(ImageFolder(root, recursive=False)) == 9  # the 3 nested images left out


def test_unlabelled_flat_and_recursive(labelled_folder, caplog):
    root, expected = labelled_folder
    Image.fromarray(expected[0][2]).save(root / "loose.png")
    assert len(ImageFolder(root, labelled=False)) == 13
    flat = ImageFolder(root, labelled=False, recursive=False)
    assert len(flat) == 1 and flat[0][1] == UNLABELLED and flat.classes == ()
    with caplog.at_level(logging.WARNING, logger="ssl_data"):
        assert len(ImageFolder(root)) == 12
    assert "1 images directly in" in caplog.text  # a loose file is reported, not silently lost


def test_exif_orientation_is_applied(tmp_path, fashion):
    img = np.ascontiguousarray(fashion[7][:, 4:24])  # 28 x 20, asymmetric
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.png"
    Image.fromarray(img).save(path, exif=exif)
    decoded = decode_image(path, "L")[0].numpy()
    np.testing.assert_array_equal(decoded, np.rot90(img, k=-1))
    assert probe_image(path) == (20, 28)


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_unreadable_file_at_index_time(labelled_folder, caplog, policy):
    root, _ = labelled_folder
    bad = root / "Coat" / "broken.png"
    bad.write_bytes(b"this is not an image")
    if policy == "raise":
        with pytest.raises(CorruptFileError, match="broken.png"):
            ImageFolder(root, on_corrupt=policy)
        return
    with caplog.at_level(logging.WARNING, logger="ssl_data"):
        data = ImageFolder(root, on_corrupt=policy)
    assert len(data) == 12 and data.corrupt.count == 1
    assert data.corrupt.skipped[0][0] == str(bad)
    assert str(bad) in caplog.text and "1 of 13 files unreadable" in caplog.text


def test_truncated_file_gets_a_counted_deterministic_substitute(labelled_folder, caplog):
    root, expected = labelled_folder
    png = root / expected[5][0]  # label 1
    png.unlink()
    target = png.with_suffix(".jpg")  # same position in the sorted order
    buffer = io.BytesIO()
    Image.fromarray(expected[5][2]).save(buffer, "JPEG")
    target.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # header intact, body cut
    data = ImageFolder(root, mode="L")
    assert len(data) == 12 and data.corrupt.count == 0  # the header check passes
    with caplog.at_level(logging.WARNING, logger="ssl_data"):
        image, label = data[5]
        again, _ = data[5]
    np.testing.assert_array_equal(image[0].numpy(), expected[6][2])  # the next index
    assert label == expected[6][1] and torch.equal(image, again)
    assert data.corrupt.count == 1 and str(target) in caplog.text
    with pytest.raises(CorruptFileError, match=target.name):
        ImageFolder(root, on_corrupt="raise")[5]
    full = ImageFolder(root, verify="full")  # a full check finds it at index time
    assert len(full) == 11 and full.corrupt.count == 1


def test_bad_arguments(tmp_path, labelled_folder):
    root, _ = labelled_folder
    with pytest.raises(ValueError, match="'CMYK'"):
        ImageFolder(root, mode="CMYK")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="verify"):
        ImageFolder(root, verify="deep")  # type: ignore[arg-type]
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "missing")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(flat / "a.png")
    with pytest.raises(DatasetNotFoundError, match="labelled=False"):
        ImageFolder(flat)
    with pytest.raises(IndexError, match="out of range"):
        ImageFolder(root)[12]


def test_images_of_different_sizes_flow_into_views_in_workers(tmp_path, fashion):
    root = tmp_path / "sizes"
    root.mkdir()
    sizes = [(28, 28), (40, 31), (17, 50), (64, 64), (9, 12), (33, 20)]
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(fashion[i]).resize((w, h), Image.Resampling.BILINEAR).save(
            root / f"{i}.png"
        )
    folder = ImageFolder(root, labelled=False)
    np.testing.assert_array_equal(folder.sizes, sizes)
    view = SimCLRView(size=16, mean=(0.5,) * 3, std=(0.25,) * 3, seed=5)
    # Each sample's views as its own batch of one, built in the main process.
    refs = [view(folder[i][0][None], [i], 2) for i in range(6)]
    data = ViewDataset(folder, view, epoch=2)
    loader = DataLoader(data, batch_size=3, num_workers=2, collate_fn=collate_views,
                        multiprocessing_context="fork")  # fmt: skip
    a, b = (torch.cat(t) for t in zip(*list(loader), strict=True))
    assert a.shape == b.shape == (6, 3, 16, 16)
    for i, (ref_a, ref_b) in enumerate(refs):
        # numpy's check: torch.testing.assert_close costs ~8 s on its first call here.
        np.testing.assert_allclose(a[i : i + 1].numpy(), ref_a.numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(b[i : i + 1].numpy(), ref_b.numpy(), rtol=0, atol=1e-6)


def test_view_dataset_rejects_items_that_are_not_images():
    view = SimCLRView(size=8)
    with pytest.raises(TypeError, match="indexable dataset"):
        ViewDataset(42, view)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"item 0 must hold .* got \(2, 3, 4, 5\)"):
        ViewDataset([np.zeros((2, 3, 4, 5), np.uint8)], view)[0]
    a, b = ViewDataset([(np.full((6, 7), 255, np.uint8), 3)], view)[0]  # (image, label) items
    assert a.shape == b.shape == (1, 1, 8, 8)
