"""The paired data of a cross-modal (CLIP) recipe: spoken words and their text.

A ``spoken_words`` recipe (``method.name: clip``) trains two encoders: ``encoder`` (a
``wav2vec2`` speech encoder) on clips of ssl-data's :class:`~ssl_data.datasets.SpokenDigits`
(espeak-ng renders of "zero" to "nine" in ``data.voices``) and ``text_encoder`` (a small BERT)
on the text of each clip's word. The text side is drawn, per (seed, epoch, sample index), from
``data.texts``: templates such as ``"{word}"``, ``"the number {word}"``, ``"{digit}"`` or
``"{gloss}"`` (the number's WordNet 3.0 gloss, e.g. "the cardinal number that is the sum of six
and one"), so the text encoder sees real, varied text for one concept. The clips are split by
voice (``data.heldout_voices``, seed 0, as ``spoken_digits``): the other voices' clips are the
training pairs; the held-out voices' clips are the retrieval queries, matched against the ten
words rendered with the first template.

:class:`PairedData` gives the trainer what every modality does (``num_samples``, a
deterministic ``batch(indices, epoch)``, ``example_inputs``); a batch is CLIP's view contract,
``[input_values, lengths, input_ids, attention_mask]``. Evaluation is cross-modal retrieval
top-1 in both directions (:func:`retrieval_top1`) and kNN top-1 of the audio embeddings by
voice, as speech recipes.

Reference: Radford et al., "Learning Transferable Visual Models From Natural Language
Supervision" (CLIP), arXiv:2103.00020.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tokenizers import Tokenizer

from ssl_train.errors import RecipeError, SslTrainError
from ssl_train.recipe import SPEECH_ENCODER, Recipe

if TYPE_CHECKING:
    import ssl_models

logger = logging.getLogger("ssl_train")
EXAMPLE_INPUTS = 64
#: Paired datasets (``data.dataset``) and the method that trains on them.
PAIRED_DATASETS = ("spoken_words",)
PAIRED_METHOD = "clip"
#: Text encoders a ``text_encoder`` section may name (ssl-models' BERT family).
TEXT_ENCODERS = ("bert", "bert_tiny", "bert_mini", "bert_small", "bert_base")
#: ``data.texts`` of a ``spoken_words`` recipe that leaves it out.
DEFAULT_TEXTS = ("{word}", "the number {word}", "{gloss}")
#: The placeholders a text template may use.
TEMPLATE_FIELDS = ("word", "digit", "gloss")
#: ``views.name`` of a paired recipe: a random crop of ``data.crop_seconds`` of each clip.
PAIRED_VIEWS = ("random_crop",)
WORDNET_NOUNS = Path("/usr/share/wordnet/data.noun")
#: WordNet 3.0's glosses of the ten numbers (noun.quantity synsets, examples after ";" cut),
#: used when Debian's ``wordnet-base`` is not installed; read from it when it is.
NUMBER_GLOSSES = (
    "a mathematical element that when added to another number yields the same number",
    "the smallest whole number or a numeral representing this number",
    "the cardinal number that is the sum of one and one or a numeral representing this number",
    "the cardinal number that is the sum of one and one and one",
    "the cardinal number that is the sum of three and one",
    "the cardinal number that is the sum of four and one",
    "the cardinal number that is the sum of five and one",
    "the cardinal number that is the sum of six and one",
    "the cardinal number that is the sum of seven and one",
    "the cardinal number that is the sum of eight and one",
)


def number_glosses(path: Path = WORDNET_NOUNS) -> tuple[str, ...]:
    """The WordNet gloss of each digit word (the first noun.quantity synset, lexicographer
    file 23, whose first lemma is the word), examples after ";" cut; :data:`NUMBER_GLOSSES`
    when ``path`` is missing or lacks a word."""
    from ssl_data.datasets.spoken_digits import DIGIT_WORDS

    if not path.is_file():
        return NUMBER_GLOSSES
    found: dict[str, str] = {}
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split(" ", 5)
            if len(parts) < 6 or parts[1] != "23" or parts[2] != "n":
                continue
            word = parts[4]
            if word in DIGIT_WORDS and word not in found and "|" in line:
                found[word] = line.split("|", 1)[1].split(";")[0].strip()
    if len(found) < len(DIGIT_WORDS):
        return NUMBER_GLOSSES
    return tuple(found[w] for w in DIGIT_WORDS)


def render_text(template: str, digit: int, glosses: tuple[str, ...]) -> str:
    """``template`` with ``{word}`` ("seven"), ``{digit}`` ("7") and ``{gloss}`` filled in."""
    from ssl_data.datasets.spoken_digits import DIGIT_WORDS

    return template.format(word=DIGIT_WORDS[digit], digit=str(digit), gloss=glosses[digit])


def check_texts(texts: list[str]) -> None:
    """Raise ``ValueError`` for an empty list or a template with an unknown placeholder."""
    if not texts:
        raise ValueError("data.texts must hold at least one template, e.g. ['{word}']")
    for t in texts:
        try:
            t.format(word="w", digit="0", gloss="g")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(
                f"data.texts template {t!r} is not valid ({err!r}); its placeholders can be "
                f"{', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
            ) from None


def check_paired_recipe(recipe: Recipe) -> None:
    """Raise ``ValueError`` when a paired recipe's method, encoders or views do not fit.

    Checks: ``method.name`` is ``clip`` and leaves the encoders' wiring (``encoder_b``,
    ``modalities``, ``num_inputs``) to the recipe; ``encoder`` is ``wav2vec2``;
    ``text_encoder`` names a BERT; ``views.name`` is ``random_crop``; ``data.texts`` are valid.
    """
    method = recipe.method.get("name")
    if method != PAIRED_METHOD:
        raise ValueError(
            f"method: {method!r} does not train on pairs; data.dataset {recipe.data.dataset} "
            f"is paired speech and text: use method.name {PAIRED_METHOD!r}"
        )
    wired = [k for k in ("encoder_b", "modalities", "num_inputs") if k in recipe.method]
    if wired:
        raise ValueError(
            f"method: {', '.join('method.' + k for k in wired)} are set by the recipe (encoder "
            "is the speech tower, text_encoder the text tower); leave them out"
        )
    if recipe.encoder.get("name") != SPEECH_ENCODER:
        raise ValueError(
            f"encoder: {recipe.encoder.get('name')!r} is not a speech encoder; in a "
            f"{recipe.data.dataset} recipe encoder is the speech tower: use {SPEECH_ENCODER!r}"
        )
    text = recipe.text_encoder or {}
    if text.get("name") not in TEXT_ENCODERS:
        raise ValueError(
            f"text_encoder: {text.get('name')!r} is not a text encoder; use one of "
            f"{', '.join(TEXT_ENCODERS)} (its vocab_size comes from the tokenizer)"
        )
    name = recipe.views.get("name")
    if name not in PAIRED_VIEWS or len(recipe.views) > 1:
        raise ValueError(
            f"views: {dict(recipe.views)} is not a paired view; data.dataset "
            f"{recipe.data.dataset} takes views {{name: random_crop}} (a random crop of "
            "data.crop_seconds), or leave views out"
        )
    check_texts(list(DEFAULT_TEXTS if recipe.data.texts is None else recipe.data.texts))


def text_encoder_config(recipe: Recipe, vocab_size: int | None) -> dict[str, Any]:
    """``recipe.text_encoder`` with ``vocab_size`` from the tokenizer (a placeholder of 1000
    before it exists).

    Raises:
        SslTrainError: ``text_encoder.vocab_size`` differs from the tokenizer's.
    """
    config = dict(recipe.text_encoder or {})
    if vocab_size is None:
        config.setdefault("vocab_size", 1000)
        return config
    given = config.setdefault("vocab_size", vocab_size)
    if given != vocab_size:
        raise SslTrainError(
            f"text_encoder.vocab_size={given} but the run's tokenizer has {vocab_size} tokens; "
            "leave text_encoder.vocab_size out to follow the tokenizer"
        )
    return config


def build_clip_model(recipe: Recipe, vocab_size: int | None) -> ssl_models.SSLMethod:
    """The recipe's CLIP: ``encoder`` (speech, 2 inputs) and ``text_encoder`` (2 inputs),
    weights initialised from ``recipe.seed``.

    Raises:
        SslModelsError, TypeError, ValueError: From ssl-models' registries.
        SslTrainError: See :func:`text_encoder_config`.
    """
    import ssl_models

    torch.manual_seed(recipe.seed)
    audio = ssl_models.build_encoder(recipe.encoder)
    text = ssl_models.build_encoder(text_encoder_config(recipe, vocab_size))
    config = {**recipe.method, "encoder_b": text, "modalities": ("speech", "text"),
              "num_inputs": (2, 2)}  # fmt: skip
    return ssl_models.build_method(config, audio)


@dataclass
class PairedCorpus:
    """Spoken words split by voice.

    Attributes:
        train: Training clips ``(T_i,) float32`` (the non-held-out voices; first ``data.limit``).
        train_labels: ``(N,) int64`` digit of each training clip.
        queries: The held-out voices' clips.
        query_labels: ``(M,) int64``.
        texts: The text templates (``data.texts``).
        glosses: WordNet gloss of each digit.
        heldout: Which voices are held out.
    """

    train: list[np.ndarray]
    train_labels: np.ndarray
    queries: list[np.ndarray]
    query_labels: np.ndarray
    texts: tuple[str, ...]
    glosses: tuple[str, ...]
    heldout: str

    def all_texts(self) -> list[str]:
        """Every template rendered for every digit (what the tokenizer is trained on)."""
        return [render_text(t, d, self.glosses) for d in range(10) for t in self.texts]

    def gallery(self) -> tuple[list[str], np.ndarray]:
        """The retrieval gallery: the ten words rendered with the first template, and their
        digits ``(10,) int64``."""
        return [render_text(self.texts[0], d, self.glosses) for d in range(10)], np.arange(10)


def load_paired_corpus(recipe: Recipe) -> PairedCorpus:
    """The spoken digits of ``data.voices`` decoded at ``data.sample_rate``, split by voice.

    Raises:
        RecipeError: Too few voices, or no clip as long as one encoder frame.
    """
    from ssl_data.datasets.spoken_digits import VOICES, SpokenDigits
    from ssl_train.speech_data import decode_clips, receptive_field, split_voices

    d = recipe.data
    start = time.perf_counter()
    voices = tuple(d.voices) if d.voices is not None else VOICES
    held = split_voices(len(voices), d.heldout_voices)
    ds = SpokenDigits(voices, cache_dir=d.root, sample_rate=d.sample_rate)
    clips, labels, kept = decode_clips(
        ds, receptive_field(recipe.encoder), "data.dataset spoken_words"
    )
    is_query = np.isin(ds.voice_ids[kept], held)
    train = [c for c, q in zip(clips, is_query, strict=True) if not q][: d.limit]
    corpus = PairedCorpus(
        train, labels[~is_query][: d.limit], [c for c, q in zip(clips, is_query, strict=True) if q],
        labels[is_query], tuple(DEFAULT_TEXTS if d.texts is None else d.texts), number_glosses(),
        "voices " + ", ".join(voices[i] for i in held),
    )  # fmt: skip
    logger.info(
        "data.dataset spoken_words: %d training pairs, %d held-out clips (%s), %d text "
        "templates, %.1f s",
        len(corpus.train), len(corpus.queries), corpus.heldout, len(corpus.texts),
        time.perf_counter() - start,
    )  # fmt: skip
    return corpus


class PairedData:
    """The training pairs of a run: clips in memory, their texts tokenised once.

    Args:
        recipe: ``data.sample_rate``, ``data.crop_seconds``, ``data.max_length``, ``seed``.
        tokenizer: The run's tokenizer (trained on :meth:`PairedCorpus.all_texts`).
        corpus: The pairs (:func:`load_paired_corpus`).

    Attributes:
        num_samples: Training pairs.
    """

    unit = "pairs"

    def __init__(self, recipe: Recipe, tokenizer: Tokenizer, corpus: PairedCorpus) -> None:
        from ssl_data.audio import RandomCrop
        from ssl_data.text import TextCollator

        self.recipe = recipe
        self.tokenizer = tokenizer
        self.corpus = corpus
        self.num_samples = len(corpus.train)
        self.crop = RandomCrop(recipe.data.crop_seconds, recipe.data.sample_rate)
        self.collator = TextCollator(tokenizer, max_length=recipe.data.max_length)
        # (template, digit) -> encoding, so a batch only collates
        self.encodings = [
            self.collator.encode([render_text(t, d, corpus.glosses) for d in range(10)])
            for t in corpus.texts
        ]

    def batch(self, indices: np.ndarray, epoch: int) -> list[torch.Tensor]:
        """``[input_values (B, T) float32, lengths (B,) int64, input_ids (B, L) int64,
        attention_mask (B, L) int64]``: random crops normalised over their real samples and
        trimmed to the longest, and each pair's text (a template drawn per sample); the same
        for the same (indices, epoch) in any process."""
        from ssl_data.randomness import uniform
        from ssl_data.text.collate import collate_encodings
        from ssl_train.speech_data import normalize_padded, pad_clips

        idx = np.asarray(indices, dtype=np.int64)
        seed = self.recipe.seed
        x, lengths = pad_clips([self.corpus.train[i] for i in idx])
        x, crop_len = self.crop(x, uniform(seed, epoch, idx, 1, stream=0), lengths.numpy())
        lens = torch.from_numpy(np.asarray(crop_len, dtype=np.int64))
        x = normalize_padded(x[:, : int(lens.max())], lens)
        pick = np.floor(uniform(seed, epoch, idx, 1, stream=1)[:, 0] * len(self.encodings))
        labels = self.corpus.train_labels[idx]
        enc = [self.encodings[int(t)][int(d)] for t, d in zip(pick, labels, strict=True)]
        b = collate_encodings(enc, self.collator.pad_id)
        return [x, lens, b["input_ids"], b["attention_mask"]]

    def tokens(self, indices: np.ndarray) -> int | None:
        """None: throughput is counted in pairs."""
        return None

    def example_inputs(self) -> dict[str, torch.Tensor]:
        """The first 64 training clips whole, normalised and zero-padded (``input_values
        (N, T) float32``, ``lengths (N,) int64``): the speech tower's inputs, for export
        checks."""
        from ssl_train.speech_data import normalize_clip, pad_clips

        x, lengths = pad_clips([normalize_clip(c) for c in self.corpus.train[:EXAMPLE_INPUTS]])
        return {"input_values": x, "lengths": lengths}


def load_paired_data(recipe: Recipe, run_dir: Path, is_main: bool, barrier: Any) -> PairedData:
    """Corpus and tokenizer of a paired run (rank 0 trains the tokenizer on every rendered
    text, or copies ``tokenizer.path``, into ``run_dir/tokenizer.json``; every rank reads it)."""
    from ssl_train.text_data import prepare_tokenizer

    corpus = load_paired_corpus(recipe)
    if is_main:
        prepare_tokenizer(recipe, run_dir, corpus.all_texts(), True)
    barrier()
    tokenizer = prepare_tokenizer(recipe, run_dir, corpus.all_texts(), False)
    return PairedData(recipe, tokenizer, corpus)


@torch.no_grad()
def embed_texts_projected(
    model: Any, tokenizer: Tokenizer, texts: list[str], max_length: int, batch_size: int = 64
) -> np.ndarray:
    """``(N, projection_dim) float32`` L2-normalised joint-space embeddings of texts, in eval
    mode (the mode is restored)."""
    from ssl_data.text import TextCollator

    device = next(model.parameters()).device
    collator = TextCollator(tokenizer, max_length=max_length)
    was_training = model.training
    model.eval()
    try:
        out = []
        for s in range(0, len(texts), batch_size):
            b = collator(texts[s : s + batch_size])
            ids, mask = b["input_ids"].to(device), b["attention_mask"].to(device)
            out.append(model.embed("text", ids, mask, projected=True).float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


@torch.no_grad()
def embed_clips_projected(model: Any, clips: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
    """``(N, projection_dim) float32`` L2-normalised joint-space embeddings of whole clips
    (each normalised over its samples), in eval mode (the mode is restored)."""
    from ssl_train.speech_data import normalize_clip, pad_clips

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = []
        for s in range(0, len(clips), batch_size):
            x, lengths = pad_clips([normalize_clip(c) for c in clips[s : s + batch_size]])
            emb = model.embed("speech", x.to(device), lengths.to(device), projected=True)
            out.append(emb.float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def retrieval_top1(
    audio: np.ndarray, audio_labels: np.ndarray, text: np.ndarray, text_labels: np.ndarray
) -> tuple[float, float]:
    """Cross-modal retrieval top-1 by cosine similarity, both directions.

    Audio -> text: each clip's most similar text (of the gallery) must have its label; text ->
    audio: each text's most similar clip must have its label. Ties go to the lowest index.

    Args:
        audio: ``(M, D) float`` clip embeddings.
        audio_labels: ``(M,) int`` their labels.
        text: ``(K, D) float`` text embeddings (the gallery).
        text_labels: ``(K,) int`` their labels.

    Returns:
        ``(audio_to_text_top1, text_to_audio_top1)``, each in [0, 1].

    Raises:
        ValueError: Empty inputs or different widths.
    """
    if len(audio) == 0 or len(text) == 0 or audio.shape[1] != text.shape[1]:
        raise ValueError(f"need (M, D) clips and (K, D) texts, got {audio.shape} and {text.shape}")
    a = audio / np.maximum(np.linalg.norm(audio, axis=1, keepdims=True), 1e-12)
    t = text / np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
    sim = a.astype(np.float64) @ t.astype(np.float64).T
    a2t = float(np.mean(text_labels[sim.argmax(1)] == audio_labels))
    t2a = float(np.mean(audio_labels[sim.argmax(0)] == text_labels))
    return a2t, t2a


def retrieval_metrics(
    model: Any, recipe: Recipe, corpus: PairedCorpus, tokenizer: Tokenizer
) -> dict[str, Any]:
    """Retrieval top-1 of the held-out voices' clips against the gallery of words, with the
    embeddings (``audio``, ``text``) for checks.

    Returns:
        ``{"retrieval_a2t_top1", "retrieval_t2a_top1", "retrieval_chance_a2t",
        "retrieval_chance_t2a", "audio", "audio_labels", "text", "text_labels"}``.
    """
    texts, text_labels = corpus.gallery()
    audio = embed_clips_projected(model, corpus.queries)
    text = embed_texts_projected(model, tokenizer, texts, recipe.data.max_length)
    a2t, t2a = retrieval_top1(audio, corpus.query_labels, text, text_labels)
    # chance: a random text has the clip's word with p 1/10; a random clip has the text's
    # word with p (clips of that word) / M
    chance_t2a = float(np.mean([np.mean(corpus.query_labels == y) for y in text_labels]))
    return {
        "retrieval_a2t_top1": a2t, "retrieval_t2a_top1": t2a,
        "retrieval_chance_a2t": 1.0 / len(texts), "retrieval_chance_t2a": chance_t2a,
        "audio": audio, "audio_labels": corpus.query_labels, "text": text,
        "text_labels": text_labels,
    }  # fmt: skip


def check_paired_builds(recipe: Recipe, source: str) -> None:
    """:func:`ssl_train.recipe._check_builds` for a paired recipe: method, towers, views and
    the crop against the speech encoder's receptive field.

    Raises:
        RecipeError: The first problem, naming the key.
    """
    import ssl_models
    from ssl_train.speech_data import receptive_field

    try:
        check_paired_recipe(recipe)
    except ValueError as err:
        raise RecipeError(f"invalid recipe {source}: {err}") from None
    try:
        build_clip_model(recipe, None)
    except (ssl_models.SslModelsError, TypeError, ValueError) as err:
        raise RecipeError(
            f"invalid recipe {source}: encoder, text_encoder or method: {err}"
        ) from None
    field = receptive_field(recipe.encoder)
    crop = round(recipe.data.crop_seconds * recipe.data.sample_rate)
    if crop < field:
        raise RecipeError(
            f"invalid recipe {source}: data.crop_seconds={recipe.data.crop_seconds} is "
            f"{crop} samples at {recipe.data.sample_rate} Hz, shorter than one encoder frame "
            f"({field} samples)"
        )


__all__ = [
    "DEFAULT_TEXTS",
    "PAIRED_DATASETS",
    "PairedCorpus",
    "PairedData",
    "build_clip_model",
    "check_paired_builds",
    "load_paired_corpus",
    "load_paired_data",
    "number_glosses",
    "retrieval_metrics",
    "retrieval_top1",
]
