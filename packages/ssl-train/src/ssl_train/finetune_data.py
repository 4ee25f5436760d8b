"""The labelled data of a fine-tuning run: images or texts, their classes and a test split.

Where the labels come from, by the pretraining recipe's ``data.dataset``:

- ``fashion_mnist``: its train split (train + validation) and test split, 10 classes.
- ``image_folder``: a folder with one sub-folder of images per class (``finetune data.path``,
  else the recipe's ``data.eval_path``, else its ``data.path``), split class by class into
  train and ``data.test_fraction`` test images (fixed seed, as ``ssl-train evaluate``).
- ``wordnet`` / ``fortunes``: the pretraining corpus's labels (WordNet supersenses, fortune
  categories): the memory-bank part of the run's own split trains, its held-out queries (never
  pretrained on) test.
- Any text run with ``finetune data.path``: a labelled text file, one example per line,
  ``label<TAB>text`` (UTF-8; blank lines and lines starting with ``#`` skipped; the label is
  everything before the first tab), split as an image folder is. Class ids follow the sorted
  label names.
- ``spoken_digits``: the digit of each clip, split by voice as online kNN and
  ``ssl-train evaluate`` split it (:func:`ssl_train.speech_data.load_speech_corpus`): the
  memory-bank voices' clips train, the ``data.heldout_voices`` voices' clips (never pretrained
  on) test.
- ``audio_folder``: a folder with one sub-folder of clips per class (``finetune data.path``,
  else the recipe's ``data.eval_path``, else its ``data.path``), split as an image folder is.
  Clips are whole, each normalised to zero mean and unit variance over its samples, and batched
  zero-padded with their lengths (the speech encoder pools over real frames only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ssl_train.data import (
    example_inputs,
    load_image_folder,
    load_images,
    preprocess,
    split_bank_queries,
)
from ssl_train.errors import RecipeError, SslTrainError
from ssl_train.recipe import Recipe

#: Examples that go into a classifier checkpoint's ``example_inputs.safetensors``.
EXAMPLE_INPUTS = 64


@dataclass
class LabelledSplits:
    """Train and test examples of a fine-tuning run, as encoder inputs on demand.

    Attributes:
        names: Class names, index i naming label i.
        train_labels: ``(N,) int64`` (validation is held out of these by the fine-tuner).
        test_labels: ``(M,) int64``.
        inputs: ``inputs(split, idx)`` -> the encoder's positional inputs for examples ``idx``
            of ``split`` ("train" or "test"): ``((B, C, H, W) float32,)`` for images,
            ``((B, L) int64 input_ids, (B, L) int64 attention_mask)`` for texts,
            ``((B, T) float32 input_values, (B,) int64 lengths)`` for clips (normalised,
            zero-padded on the right to the longest, lengths in samples), on the CPU.
        examples: Real inputs for the checkpoint (``example_inputs.safetensors``).
        files: Files copied into every classifier checkpoint (a text run's ``tokenizer.json``).
        unit: "images", "texts" or "clips", for messages and the summary.
        source: Where the labels came from, for the summary.
    """

    names: tuple[str, ...]
    train_labels: np.ndarray
    test_labels: np.ndarray
    inputs: Callable[[str, np.ndarray], tuple[torch.Tensor, ...]]
    examples: dict[str, torch.Tensor]
    files: dict[str, Path] = field(default_factory=dict)
    unit: str = "images"
    source: str = ""


def read_labelled_texts(path: str | Path) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """Read a labelled text file: one ``label<TAB>text`` per line.

    Args:
        path: A UTF-8 file. Blank lines and lines starting with ``#`` are skipped; the label is
            the text before the first tab (stripped), the text the rest (stripped).

    Returns:
        ``(texts, labels (N,) int64, names)``, class ids in sorted name order.

    Raises:
        RecipeError: The file is missing or not UTF-8, a line has no tab or an empty label or
            text (the message names the line), or it holds fewer than 2 classes.
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise RecipeError(f"data.path: labelled text file {p} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RecipeError(f"data.path: cannot read {p} as UTF-8 text ({err})") from None
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        label, tab, text = line.partition("\t")
        if not tab or not label.strip() or not text.strip():
            raise RecipeError(
                f"data.path: {p} line {number} is not 'label<TAB>text' with both non-empty: "
                f"{line[:80]!r}"
            )
        pairs.append((label.strip(), text.strip()))
    names = tuple(sorted({label for label, _ in pairs}))
    if len(names) < 2:
        raise RecipeError(
            f"data.path: {p} holds {len(pairs)} labelled texts in {len(names)} class(es); a "
            "classifier needs at least 2 classes"
        )
    ids = {name: i for i, name in enumerate(names)}
    labels = np.asarray([ids[label] for label, _ in pairs], dtype=np.int64)
    return [text for _, text in pairs], labels, names


def check_single_encoder(recipe: Recipe) -> None:
    """Refuse a two-tower run (``spoken_words``: a speech and a text encoder), which has no
    single encoder to put a classifier on.

    Raises:
        SslTrainError: ``recipe.data.dataset`` is a paired dataset.
    """
    if recipe.data.is_paired:
        raise SslTrainError(
            f"data.dataset {recipe.data.dataset} is a two-tower (speech + text) run, which "
            "ssl-train finetune does not take; fine-tune a single-encoder run (spoken_digits, "
            "audio_folder, an image or a text run), or evaluate this one with ssl-train evaluate"
        )


def _split(labels: np.ndarray, fraction: float, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    train, test = split_bank_queries(labels, fraction)
    return train[:limit], test[:limit]


def load_labelled_splits(
    recipe: Recipe,
    *,
    path: str | None,
    test_fraction: float,
    limit: int | None,
    checkpoint: Path,
) -> LabelledSplits:
    """The labelled train and test splits for fine-tuning the encoder of ``recipe``.

    Args:
        recipe: The pretraining recipe, ``data.root`` already replaced by the fine-tuning one.
        path: Fine-tuning ``data.path``: a class-folder of images or clips, or a
            ``label<TAB>text`` file.
        test_fraction: Part of each class held out as the test split (folders and files).
        limit: First N examples of each split.
        checkpoint: The pretraining checkpoint folder (a text run's tokenizer is found from it).

    Raises:
        SslTrainError: An unlabelled run without ``path`` (``text_file``; ``audio_folder``
            without class sub-folders in ``data.eval_path`` or ``data.path``), or a
            ``spoken_words`` (two-tower) run.
        RecipeError: A missing or malformed folder or file (the message names the key), or
            ``path`` for a dataset with its own labelled splits.
    """
    d = recipe.data
    if d.is_text:
        return _text_splits(recipe, path, test_fraction, limit, checkpoint)
    if d.is_speech:
        return _speech_splits(recipe, path, test_fraction, limit)
    if d.dataset == "image_folder":
        folder = path or d.eval_path or d.path
        key = "data.path" if path else ("data.eval_path" if d.eval_path else "data.path")
        assert folder is not None  # the recipe's check: image_folder needs data.path
        loaded = load_image_folder(folder, recipe, labelled=True, key=key)
        train, test = _split(loaded.labels, test_fraction, limit)
        images = {"train": loaded.images[train], "test": loaded.images[test]}
        labels = (loaded.labels[train], loaded.labels[test])
        names, source = loaded.classes, f"{key}={folder} (class sub-folders)"
    else:
        if path is not None:
            raise RecipeError(
                f"data.path is for image_folder, audio_folder and text runs; data.dataset "
                f"{d.dataset} has its own labelled splits"
            )
        from ssl_train.finetune_recipe import LABELS

        train_images, train_labels = load_images(recipe, "train")
        test_images, test_labels = load_images(recipe, "test")
        images = {"train": train_images, "test": test_images}
        labels = (train_labels, test_labels)
        names, source = LABELS[d.dataset], f"{d.dataset} train/test splits"

    def inputs(split: str, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
        return (preprocess(recipe, images[split][idx]),)

    return LabelledSplits(
        tuple(names),
        labels[0],
        labels[1],
        inputs,
        example_inputs(recipe, images["train"]),
        unit="images",
        source=source,
    )


def _text_splits(
    recipe: Recipe, path: str | None, test_fraction: float, limit: int | None, checkpoint: Path
) -> LabelledSplits:
    from ssl_data.text import TextCollator
    from ssl_data.text.collate import collate_encodings
    from ssl_train.text_data import TOKENIZER_FILE, load_text_corpus, run_tokenizer

    if path is not None:
        texts, all_labels, names = read_labelled_texts(path)
        train, test = _split(all_labels, test_fraction, limit)
        split_texts = {"train": [texts[i] for i in train], "test": [texts[i] for i in test]}
        labels = (all_labels[train], all_labels[test])
        source = f"data.path={path} (label<TAB>text)"
    else:
        corpus = load_text_corpus(recipe)
        if not corpus.labelled:
            raise SslTrainError(
                f"data.dataset {recipe.data.dataset} has no labels to fine-tune on: pass "
                "--set data.path=FILE, a labelled text file with one 'label<TAB>text' per line"
            )
        split_texts = {"train": corpus.bank[:limit], "test": corpus.queries[:limit]}
        labels = (corpus.bank_labels[:limit], corpus.query_labels[:limit])
        names = corpus.label_names
        source = f"{recipe.data.dataset} labels (the pretraining run's held-out split tests)"
    tokenizer = run_tokenizer(checkpoint)
    collator = TextCollator(tokenizer, max_length=recipe.data.max_length)
    encodings = {k: collator.encode(v) for k, v in split_texts.items()}

    def inputs(split: str, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
        b = collate_encodings([encodings[split][i] for i in idx], collator.pad_id)
        return b["input_ids"], b["attention_mask"]

    ex = inputs("train", np.arange(min(EXAMPLE_INPUTS, len(labels[0]))))
    folder = Path(checkpoint)
    tok_file = next(
        c / TOKENIZER_FILE for c in (folder, folder.parent.parent) if (c / TOKENIZER_FILE).is_file()
    )
    return LabelledSplits(
        tuple(names),
        labels[0],
        labels[1],
        inputs,
        {"input_ids": ex[0], "attention_mask": ex[1]},
        files={TOKENIZER_FILE: tok_file},
        unit="texts",
        source=source,
    )


def _speech_splits(
    recipe: Recipe, path: str | None, test_fraction: float, limit: int | None
) -> LabelledSplits:
    from ssl_train.speech_data import (
        decode_clips,
        load_speech_corpus,
        normalize_clip,
        open_audio_folder,
        pad_clips,
        receptive_field,
    )

    d = recipe.data
    check_single_encoder(recipe)
    if d.dataset == "spoken_digits":
        if path is not None:
            raise RecipeError(
                "data.path is for image_folder, audio_folder and text runs; data.dataset "
                "spoken_digits has its own labelled split, by voice (data.heldout_voices)"
            )
        corpus = load_speech_corpus(recipe, pretraining=False)
        clips = {"train": corpus.bank[:limit], "test": corpus.queries[:limit]}
        labels = (corpus.bank_labels[:limit], corpus.query_labels[:limit])
        names = corpus.label_names
        source = f"spoken_digits digits (the memory-bank voices train; {corpus.heldout} test)"
    else:
        folder = path or d.eval_path or d.path
        key = "data.path" if path else ("data.eval_path" if d.eval_path else "data.path")
        hint = (
            "pass --set data.path=DIR, a folder with one sub-folder of clips per class (split "
            f"{1 - test_fraction:g}/{test_fraction:g} per class into train and test)"
        )
        if folder is None:
            raise SslTrainError(
                f"data.dataset {d.dataset} has no labels to fine-tune on (the recipe sets "
                f"neither data.eval_path nor data.path): {hint}"
            )
        try:
            ds = open_audio_folder(str(folder), recipe, True, key)
        except RecipeError as err:
            if path or d.eval_path:
                raise
            # The pretraining folder is usually unlabelled: say where labels can come from.
            raise SslTrainError(
                f"data.dataset {d.dataset} has no labels to fine-tune on: the recipe has no "
                f"data.eval_path and its data.path has no class sub-folders ({err}); {hint}"
            ) from None
        all_clips, all_labels, _ = decode_clips(ds, receptive_field(recipe.encoder), key)
        train, test = _split(all_labels, test_fraction, limit)
        clips = {"train": [all_clips[i] for i in train], "test": [all_clips[i] for i in test]}
        labels = (all_labels[train], all_labels[test])
        names = tuple(ds.classes)
        source = f"{key}={folder} (class sub-folders)"
    # Normalised once: wav2vec 2.0's per-utterance input contract, as pretraining and kNN.
    normalised = {k: [normalize_clip(c) for c in v] for k, v in clips.items()}

    def inputs(split: str, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
        return pad_clips([normalised[split][i] for i in idx])

    x, lengths = pad_clips(normalised["train"][:EXAMPLE_INPUTS])
    return LabelledSplits(
        tuple(names),
        labels[0],
        labels[1],
        inputs,
        {"input_values": x, "lengths": lengths},
        unit="clips",
        source=source,
    )
