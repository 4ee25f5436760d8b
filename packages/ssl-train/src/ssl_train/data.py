"""The training data of an image recipe: images in memory, a seeded epoch order, the view generator.

Text recipes: :mod:`ssl_train.text_data`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_data import (
    CorruptFileError,
    DatasetNotFoundError,
    ImageFolder,
    as_float_images,
    load_fashion_mnist,
    normalize,
)
from ssl_data.datasets.image_decode import decode_image
from ssl_data.policies import RandAugment, TrivialAugment
from ssl_data.views import (
    BarlowTwinsView,
    BYOLView,
    JigsawView,
    MaskedPatchView,
    MoCoV2View,
    MultiCropView,
    RotationView,
    SimCLRView,
    VICRegView,
)
from ssl_train.errors import RecipeError, SslTrainError
from ssl_train.recipe import Recipe

EXAMPLE_INPUTS = 64
#: Seed of the bank/query split of a labelled evaluation folder: fixed (not the run's seed), so
#: runs of different seeds are scored on the same queries.
EVAL_SPLIT_SEED = 0
logger = logging.getLogger("ssl_train")


@dataclasses.dataclass(frozen=True)
class FolderImages:
    """An image folder decoded into memory.

    Attributes:
        images: ``(N, S, S) uint8`` (1 channel) or ``(N, 3, S, S) uint8``, S = ``image_size``.
        labels: ``(N,) int64`` class ids (-1 when loaded unlabelled).
        classes: Class names (sub-folder names, sorted) of the ids; empty when unlabelled.
        paths: ``(N,)`` file of each image.
        corrupt: ``(path, reason)`` of every unreadable file skipped.
    """

    images: torch.Tensor
    labels: np.ndarray
    classes: tuple[str, ...]
    paths: list[Path]
    corrupt: list[tuple[str, str]]


def fit_to_size(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize an image's shorter side to ``size`` and centre-crop the longer one to it.

    The resize is bilinear with antialiasing (as :func:`preprocess`); an image already
    ``size`` x ``size`` is returned unchanged (bit-exact).

    Args:
        image: ``(C, H, W) uint8``.
        size: Output side, pixels.

    Returns:
        ``(C, size, size) uint8``.
    """
    _, h, w = image.shape
    if (h, w) == (size, size):
        return image
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = image
    if (nh, nw) != (h, w):
        x = torch.nn.functional.interpolate(
            image.unsqueeze(0).float(), size=(nh, nw), mode="bilinear", antialias=True,
            align_corners=False,
        )[0].round_().clamp_(0, 255).to(torch.uint8)  # fmt: skip
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[:, top : top + size, left : left + size].contiguous()


def check_data_source(recipe: Recipe) -> None:
    """Check that an ``image_folder`` or ``audio_folder`` recipe's folders exist (cheap;
    Fashion-MNIST and the bundled corpora: nothing).

    Raises:
        RecipeError: ``data.path`` is unset or not a folder, or ``data.eval_path`` is set and
            not a folder; the message names the key and the path.
    """
    d = recipe.data
    if d.dataset not in ("image_folder", "audio_folder"):
        return
    if d.path is None:
        what = "images" if d.dataset == "image_folder" else "clips (WAV/FLAC)"
        raise RecipeError(
            f"data.path is not set: data.dataset {d.dataset} needs the folder of your {what} "
            f"(e.g. --set data.path=my_{'images' if d.dataset == 'image_folder' else 'clips'})"
        )
    for key, folder in (("data.path", d.path), ("data.eval_path", d.eval_path)):
        if folder is not None and not Path(folder).is_dir():
            raise RecipeError(f"{key}: folder {folder} does not exist")


def load_image_folder(
    folder: str | Path, recipe: Recipe, *, labelled: bool, key: str, limit: int | None = None
) -> FolderImages:
    """Decode a folder of images once into memory at the recipe's size and channels.

    Files are listed, ordered and checked by :class:`ssl_data.ImageFolder` (recursive;
    ``labelled``: one sub-folder per class) and decoded by its decoder (EXIF orientation
    applied; converted to "L" or "RGB" by ``data.channels``), on a few threads; then each image
    is fitted to ``data.image_size`` (:func:`fit_to_size`). An unreadable file follows
    ``data.on_corrupt``: skipped, logged and counted in :attr:`FolderImages.corrupt`, or raised.

    Args:
        folder: The folder.
        recipe: ``data.image_size``, ``data.channels``, ``data.on_corrupt``, ``threads``.
        labelled: Labels from class sub-folders (else every image, label -1).
        key: The recipe key (or option) that named the folder, for messages.
        limit: Keep only the first N images (path order).

    Returns:
        The images, labels, class names, paths and skipped files.

    Raises:
        RecipeError: The folder is missing, has no class sub-folder (``labelled``), or holds no
            readable image with a known suffix (the message lists the suffixes looked for, as
            :class:`ssl_data.ImageFolder` does).
        CorruptFileError: An unreadable file under ``data.on_corrupt: raise``.
    """
    d = recipe.data
    start = time.perf_counter()
    try:
        ds = ImageFolder(
            folder, labelled=labelled, recursive=True, mode="L" if d.channels == 1 else "RGB",
            on_corrupt=d.on_corrupt, verify="header",
        )  # fmt: skip
    except DatasetNotFoundError as err:
        if not Path(folder).is_dir():
            raise RecipeError(f"{key}: folder {folder} does not exist") from None
        hint = "; it needs one sub-folder of images per class" if labelled else ""
        raise RecipeError(f"{key}: {err}{hint}") from None
    paths = ds.paths[:limit]
    labels = ds.labels[:limit]
    out = torch.empty((len(paths), d.channels, d.image_size, d.image_size), dtype=torch.uint8)

    def decode(i: int) -> CorruptFileError | None:
        try:
            out[i] = fit_to_size(decode_image(paths[i], ds.mode), d.image_size)
        except CorruptFileError as err:  # handled in order below, by the dataset's policy
            return err
        return None

    workers = min(8, recipe.threads or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        errors = list(pool.map(decode, range(len(paths))))
    for path, error in zip(paths, errors, strict=True):
        if error is not None:
            ds.corrupt.handle(path, error)  # raises under on_corrupt="raise"
    keep = [i for i, error in enumerate(errors) if error is None]
    if not keep:
        raise RecipeError(
            f"{key}: none of the {len(paths)} image files under {folder} could be decoded"
        )
    images = out if len(keep) == len(paths) else out[keep]
    if d.channels == 1:
        images = images[:, 0]  # (N, S, S), as Fashion-MNIST
    skipped = list(ds.corrupt.skipped)
    logger.info(
        "%s %s: %d images%s, %s uint8 in memory (%.1f MB), %d unreadable file(s) skipped, "
        "%.1f s",
        key, folder, len(keep), f" in {len(ds.classes)} classes" if labelled else "",
        "x".join(str(v) for v in images.shape[1:]), images.numel() / 1e6, len(skipped),
        time.perf_counter() - start,
    )  # fmt: skip
    return FolderImages(
        images, np.asarray(labels[keep], dtype=np.int64), ds.classes,
        [paths[i] for i in keep], skipped,
    )  # fmt: skip


def load_images(recipe: Recipe, split: str | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """The recipe's pretraining images: ``(N, H, W)`` or ``(N, C, H, W)`` uint8, ``(N,) int64``.

    Fashion-MNIST: the split (default ``data.split``) with its labels. ``image_folder``: every
    image under ``data.path`` at ``data.image_size`` (:func:`load_image_folder`), labels -1;
    its labelled images come from :func:`labelled_eval_images`.

    Raises:
        RecipeError: A missing or empty folder (the message names the key).
        SslTrainError: ``split="test"`` of an ``image_folder`` recipe (it has no test split).
    """
    d = recipe.data
    if d.dataset == "image_folder":
        if split not in (None, "train"):
            raise SslTrainError(
                f"data.dataset image_folder has no {split!r} split: labelled images come from "
                "data.eval_path (used by online kNN and ssl-train evaluate); ssl-train finetune "
                "does not read image folders yet"
            )
        check_data_source(recipe)
        assert d.path is not None  # check_data_source
        loaded = load_image_folder(d.path, recipe, labelled=False, key="data.path", limit=d.limit)
        return loaded.images, loaded.labels
    images, labels = load_fashion_mnist(split or d.split, root=d.root)  # type: ignore[arg-type]
    if d.limit is not None:
        images, labels = images[: d.limit], labels[: d.limit]
    return torch.from_numpy(np.ascontiguousarray(images)), labels


def describe_source(recipe: Recipe) -> str:
    """The recipe keys that locate its pretraining images, for messages."""
    d = recipe.data
    if d.dataset in ("image_folder", "audio_folder"):
        return f"data.path={d.path!r}"
    return f"data.root={d.root!r}"


VIEWS: dict[str, type] = {
    "simclr": SimCLRView,
    "moco_v2": MoCoV2View,
    "byol": BYOLView,
    "vicreg": VICRegView,
    "barlow_twins": BarlowTwinsView,
    "multi_crop": MultiCropView,
    "masked_patches": MaskedPatchView,
    "rotation": RotationView,
    "jigsaw": JigsawView,
}
POLICIES: dict[str, type] = {"rand_augment": RandAugment, "trivial_augment": TrivialAugment}

ViewGenerator = Callable[[torch.Tensor, np.ndarray, int], Sequence[torch.Tensor]]


def build_views(recipe: Recipe) -> ViewGenerator:
    """The view generator the recipe names, with the data's size, mean and std filled in.

    ``recipe.views`` is ``{"name": ..., **arguments}``; ``policy`` may be
    ``{"name": "rand_augment" | "trivial_augment", **arguments}``. ``size`` defaults to
    ``data.image_size`` for generators whose own default is a fixed size.

    Raises:
        KeyError: Unknown view or policy name (the message lists the known ones).
        TypeError: An argument the generator does not take.
        ValueError: A value the generator rejects.
    """
    kwargs: dict[str, Any] = dict(recipe.views)
    name = kwargs.pop("name", "simclr")
    if name not in VIEWS:
        raise KeyError(f"unknown view generator {name!r}; known: {sorted(VIEWS)}")
    cls = VIEWS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    if isinstance(kwargs.get("policy"), dict):
        policy = dict(kwargs["policy"])
        pname = policy.pop("name", None)
        if pname not in POLICIES:
            raise KeyError(f"unknown policy {pname!r}; known: {sorted(POLICIES)}")
        kwargs["policy"] = POLICIES[pname](**policy)
    defaults = {"mean": tuple(recipe.data.mean), "std": tuple(recipe.data.std), "seed": recipe.seed}
    size_field = fields.get("size")
    if size_field is not None and size_field.default is not None:
        defaults["size"] = recipe.data.image_size
    for key, value in defaults.items():
        if key in fields:
            kwargs.setdefault(key, value)
    generator: ViewGenerator = cls(**kwargs)
    return generator


def preprocess(recipe: Recipe, images: torch.Tensor) -> torch.Tensor:
    """Images as the encoder sees them outside training: resized to ``image_size``, normalised.

    Args:
        images: ``(B, H, W)`` or ``(B, C, H, W)`` uint8.

    Returns:
        ``(B, C, image_size, image_size) float32``.
    """
    x = as_float_images(images)
    size = recipe.data.image_size
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return normalize(x, recipe.data.mean, recipe.data.std)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of one epoch: a permutation of ``range(n)`` fixed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def example_inputs(recipe: Recipe, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Real inputs saved with each checkpoint for export validation (docs/contracts.md)."""
    raw = images[:EXAMPLE_INPUTS]
    hwc = raw.unsqueeze(-1) if raw.ndim == 3 else raw.permute(0, 2, 3, 1)
    return {"pixel_values": preprocess(recipe, raw), "images": hwc.contiguous()}


def has_labelled_eval(recipe: Recipe) -> bool:
    """Whether the recipe names labelled data for online kNN (Fashion-MNIST, WordNet, fortunes
    and spoken digits always do; an image or audio folder with ``data.eval_path``; a text file
    never)."""
    d = recipe.data
    labelled = ("fashion_mnist", "wordnet", "fortunes", "spoken_digits", "spoken_words")
    return d.dataset in labelled or (
        d.dataset in ("image_folder", "audio_folder") and d.eval_path is not None
    )


class ImageData:
    """The pretraining images of a run in memory, and their views.

    What the trainer needs of any modality (:class:`ssl_train.text_data.TextData` is the other):
    ``num_samples``, ``batch(indices, epoch)`` (a pure function of its arguments and the
    recipe), ``tokens`` and ``example_inputs``.

    Args:
        recipe: For the view generator and the preprocessing of the example inputs.
        images: ``(N, H, W)`` or ``(N, C, H, W)`` uint8 (:func:`load_images`).
    """

    unit = "images"

    def __init__(self, recipe: Recipe, images: torch.Tensor) -> None:
        self.recipe = recipe
        self.images = images
        self.num_samples = int(images.shape[0])
        self.views = build_views(recipe)

    def batch(self, indices: np.ndarray, epoch: int) -> Sequence[torch.Tensor]:
        """The views of the images at ``indices`` (augmentations seeded by seed, epoch, index)."""
        return self.views(self.images[indices], indices, epoch)

    def tokens(self, indices: np.ndarray) -> int | None:
        """None: images have no tokens."""
        return None

    def example_inputs(self) -> dict[str, torch.Tensor]:
        """See :func:`example_inputs`."""
        return example_inputs(self.recipe, self.images)


def split_bank_queries(labels: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split a labelled folder into memory-bank and query indices, class by class.

    ``round(test_fraction * n_c)`` images of each class of ``n_c`` (at least 1, and at most
    ``n_c - 1``: a class of one image stays in the bank) become queries, chosen by a permutation
    fixed by :data:`EVAL_SPLIT_SEED`. Both index lists are in one shuffled order, so a prefix
    (``evaluation.bank_size`` / ``heldout_size``) samples every class fairly.

    Args:
        labels: ``(N,) int64``.
        test_fraction: In (0, 1).

    Returns:
        ``(bank (N - M,) int64, queries (M,) int64)`` indices into ``labels``.
    """
    rng = np.random.default_rng(EVAL_SPLIT_SEED)
    is_query = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        m = min(len(members) - 1, max(1, round(len(members) * test_fraction)))
        is_query[rng.permutation(members)[:m]] = True
    order = rng.permutation(len(labels))
    return order[~is_query[order]], order[is_query[order]]


def labelled_eval_images(
    recipe: Recipe, eval_path: str | Path | None = None, eval_test_path: str | Path | None = None
) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
    """The labelled images of kNN evaluation: a memory bank and queries, whole.

    - ``eval_test_path`` given: the bank is all of ``eval_path`` (or ``data.eval_path``), the
      queries all of ``eval_test_path``; classes are matched by sub-folder name.
    - ``eval_path`` (or, for ``image_folder``, ``data.eval_path``): that labelled folder split by
      :func:`split_bank_queries` with ``data.eval_test_fraction``.
    - Otherwise (Fashion-MNIST): the train split as bank, the test split as queries
      (``data.limit`` applies to both).

    Folders are decoded at the recipe's ``image_size`` and ``channels``
    (:func:`load_image_folder`).

    Returns:
        ``(bank (N, ...) uint8, bank_labels (N,) int64, queries (M, ...) uint8,
        query_labels (M,) int64)``; images ``(N, H, W)`` or ``(N, C, H, W)``.

    Raises:
        SslTrainError: An ``image_folder`` recipe without ``data.eval_path`` and no
            ``eval_path``; ``eval_test_path`` without a bank folder; a query class the bank
            lacks. RecipeError: a missing or empty folder.
    """
    d = recipe.data
    key = "--eval-path"
    if eval_path is None and d.dataset == "image_folder":
        eval_path, key = d.eval_path, "data.eval_path"
    if eval_path is None:
        if eval_test_path is not None:
            raise SslTrainError(
                "--eval-test-path needs a labelled memory bank: pass --eval-path DIR too"
            )
        if d.dataset == "image_folder":
            raise SslTrainError(
                "no labelled images to evaluate with: the recipe's data.eval_path is not set; "
                "pass --eval-path DIR (a folder with one sub-folder of images per class, split "
                f"{1 - d.eval_test_fraction:g}/{d.eval_test_fraction:g} into memory bank and "
                "queries), optionally with --eval-test-path DIR for separate queries"
            )
        bank, bank_labels = load_images(recipe, "train")
        queries, query_labels = load_images(recipe, "test")
        return bank, bank_labels, queries, query_labels
    labelled = load_image_folder(eval_path, recipe, labelled=True, key=key)
    if eval_test_path is None:
        b, q = split_bank_queries(labelled.labels, d.eval_test_fraction)
        return labelled.images[b], labelled.labels[b], labelled.images[q], labelled.labels[q]
    test = load_image_folder(eval_test_path, recipe, labelled=True, key="--eval-test-path")
    ids = {name: i for i, name in enumerate(labelled.classes)}
    missing = sorted(set(test.classes) - set(ids))
    if missing:
        raise SslTrainError(
            f"--eval-test-path {eval_test_path} has classes the memory bank {eval_path} lacks: "
            f"{', '.join(missing)}"
        )
    remap = np.asarray([ids[name] for name in test.classes], dtype=np.int64)
    return labelled.images, labelled.labels, test.images, remap[test.labels]


def labelled_splits(
    recipe: Recipe,
) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
    """The labelled data of online evaluation: a memory bank and held-out queries.

    The first ``evaluation.bank_size`` images of the bank and the first
    ``evaluation.heldout_size`` queries of :func:`labelled_eval_images`: Fashion-MNIST's train
    and test splits (``data.limit`` applies first, as in ``ssl-train evaluate``; the files are
    already shuffled, so a prefix is a fair sample of every class), or ``data.eval_path`` split
    into bank and queries (in shuffled order).

    Returns:
        ``(bank (N, ...) uint8, bank_labels (N,) int64, heldout (M, ...) uint8,
        heldout_labels (M,) int64)``; images ``(N, H, W)`` or ``(N, C, H, W)``.
    """
    bank, bank_labels, heldout, heldout_labels = labelled_eval_images(recipe)
    n, m = recipe.evaluation.bank_size, recipe.evaluation.heldout_size
    return bank[:n], bank_labels[:n], heldout[:m], heldout_labels[:m]
