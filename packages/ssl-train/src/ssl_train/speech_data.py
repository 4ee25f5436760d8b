"""The training data of a speech recipe: clips in memory, span-masked crops, HuBERT targets.

A speech recipe (``data.dataset``: ``spoken_digits`` or ``audio_folder``) gives the trainer the
same three things an image recipe does (:class:`SpeechData`): how many samples there are, a
deterministic batch for any (indices, epoch), and real example inputs for the checkpoint. Clips
are decoded once at ``data.sample_rate`` when the run starts. A batch is ssl-data's
:class:`~ssl_data.audio.Wav2Vec2MaskView` (a random crop of ``data.crop_seconds``, zero-padded
on the right when the clip is shorter, and the span mask over the encoder's frames), each crop
normalised to zero mean and unit variance over its real samples (wav2vec 2.0's input
contract, which the exported graph applies too), trimmed to the batch's longest real length.
Every random choice is a function of (seed, epoch, sample index), so an exact resume needs no
data state. HuBERT's targets are k-means clusters of MFCC frames (:class:`HubertTargets`),
fitted once at run start and saved in the run folder.
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
import torch

from ssl_train.errors import RecipeError, SslTrainError
from ssl_train.recipe import SPEECH_DATASETS, Recipe

logger = logging.getLogger("ssl_train")
EXAMPLE_INPUTS = 64
#: Seed of the memory-bank/query split (of voices, or of a labelled folder), as ssl_train.data's.
EVAL_SPLIT_SEED = 0
#: wav2vec 2.0's per-utterance normalisation epsilon (transformers' feature extractor; the
#: exported graph uses the same).
NORM_EPS = 1e-7
#: HuBERT's k-means targets of a run, fitted at run start (a resume reads them back).
HUBERT_TARGETS_FILE = "hubert_targets.safetensors"
#: The speech methods a recipe can train, and their span-mask defaults (the papers').
SPEECH_METHODS: dict[str, dict[str, Any]] = {
    "wav2vec2": {"mask_prob": 0.65, "mask_length": 10},
    "hubert": {"mask_prob": 0.8, "mask_length": 10},
}


@dataclass(frozen=True)
class SpanMaskView:
    """``views`` of a speech recipe: a random crop of ``data.crop_seconds`` and the wav2vec 2.0
    span mask over the encoder's frames of the crop (never on padding).

    Args:
        mask_prob: Share of frames masked before overlaps (wav2vec 2.0: 0.65; HuBERT: 0.8).
        mask_length: Span length in encoder frames (10 in both papers).
        min_masks: Least spans per clip (transformers' default 2; wav2vec 2.0 needs 2 masked
            frames per utterance for a distractor).

    Reference: Baevski et al., arXiv:2006.11477, section 3.1; Hsu et al., arXiv:2106.07447.
    """

    mask_prob: float = 0.65
    mask_length: int = 10
    min_masks: int = 2

    def build(self, recipe: Recipe) -> Any:
        """ssl-data's :class:`~ssl_data.audio.Wav2Vec2MaskView` for the recipe's rate, crop,
        seed and encoder strides.

        Raises:
            ValueError: A value it rejects.
        """
        from ssl_data.audio import Wav2Vec2MaskView

        kernel, stride = conv_layout(recipe.encoder)
        return Wav2Vec2MaskView(
            sample_rate=recipe.data.sample_rate, crop_seconds=recipe.data.crop_seconds,
            mask_prob=self.mask_prob, mask_length=self.mask_length, min_masks=self.min_masks,
            conv_kernel=kernel, conv_stride=stride, seed=recipe.seed,
        )  # fmt: skip


#: Speech view generators by name (``views.name`` of a speech recipe).
SPEECH_VIEWS: dict[str, type] = {"span_mask": SpanMaskView}


def conv_layout(encoder: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(conv_kernel, conv_stride)`` of a ``wav2vec2`` encoder config (its defaults if unset)."""
    from ssl_models.speech import SpeechEncoder

    params = inspect.signature(SpeechEncoder).parameters
    kernel = encoder.get("conv_kernel", params["conv_kernel"].default)
    stride = encoder.get("conv_stride", params["conv_stride"].default)
    return tuple(int(k) for k in kernel), tuple(int(s) for s in stride)


def receptive_field(encoder: dict[str, Any]) -> int:
    """Samples one encoder frame sees; a shorter clip has no frame."""
    field, hop = 1, 1
    for k, s in zip(*conv_layout(encoder), strict=True):
        field += (k - 1) * hop
        hop *= s
    return field


def check_speech_method(recipe: Recipe) -> None:
    """Raise ``ValueError`` when the recipe's method or encoder is not a speech one."""
    method = recipe.method.get("name")
    if method not in SPEECH_METHODS:
        raise ValueError(
            f"{method!r} is not a speech method; data.dataset {recipe.data.dataset} is speech: "
            f"use {', '.join(SPEECH_METHODS)}"
        )


def build_speech_views(recipe: Recipe) -> SpanMaskView:
    """The speech view generator a recipe names (validated against the data and encoder).

    Raises:
        KeyError: ``views.name`` is not a speech view (an image view generator, for instance).
        TypeError: An argument the view does not take.
        ValueError: A value it rejects.
    """
    kwargs = dict(recipe.views)
    name = kwargs.pop("name", None)
    if name not in SPEECH_VIEWS:
        raise KeyError(
            f"{name!r} is not a speech view generator; data.dataset {recipe.data.dataset} is "
            f"speech, whose views are: {', '.join(SPEECH_VIEWS)}; leave views out for the "
            "method's default"
        )
    view: SpanMaskView = SPEECH_VIEWS[name](**kwargs)
    view.build(recipe)  # validates the mask against the crop
    return view


def normalize_clip(clip: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance over a clip's samples (in float64), ``(T,) float32``."""
    x = np.asarray(clip, dtype=np.float64)
    return ((x - x.mean()) / np.sqrt(x.var() + NORM_EPS)).astype(np.float32)


def normalize_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row of ``(B, T) float32`` normalised over its first ``lengths[b]`` samples (float64
    statistics), zero after them."""
    real = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    x64 = x.double() * real
    n = lengths.double().clamp(min=1)[:, None]
    mean = x64.sum(1, keepdim=True) / n
    var = (((x64 - mean) * real) ** 2).sum(1, keepdim=True) / n
    return (((x64 - mean) / torch.sqrt(var + NORM_EPS)) * real).float()


def pad_clips(clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, max T) float32`` zero-padded on the right and ``(B,) int64`` lengths."""
    lengths = torch.tensor([len(c) for c in clips], dtype=torch.int64)
    x = torch.zeros(len(clips), int(lengths.max()) if len(clips) else 0)
    for i, c in enumerate(clips):
        x[i, : len(c)] = torch.from_numpy(np.asarray(c, dtype=np.float32))
    return x, lengths


@dataclass
class SpeechCorpus:
    """A speech dataset, split for pretraining and kNN evaluation.

    Attributes:
        train: The pretraining clips, ``(T_i,) float32`` at ``data.sample_rate`` (spoken
            digits: the memory-bank voices' clips; first ``data.limit``).
        bank: Labelled memory-bank clips (empty when unlabelled).
        bank_labels: ``(N,) int64``.
        queries: Held-out labelled clips, never pretrained on (empty when unlabelled).
        query_labels: ``(M,) int64``.
        label_names: Class names of the label ids (empty when unlabelled).
        heldout: What the queries are (e.g. the held-out voices), for logs and reports.
    """

    train: list[np.ndarray]
    bank: list[np.ndarray]
    bank_labels: np.ndarray
    queries: list[np.ndarray]
    query_labels: np.ndarray
    label_names: tuple[str, ...]
    heldout: str = ""

    @property
    def labelled(self) -> bool:
        """Whether kNN evaluation is possible."""
        return len(self.queries) > 0


def split_voices(num_voices: int, heldout: int) -> np.ndarray:
    """Indices of the held-out voices: ``heldout`` of ``num_voices`` by a permutation fixed by
    :data:`EVAL_SPLIT_SEED` (sorted).

    Raises:
        RecipeError: Fewer than ``heldout + 1`` voices.
    """
    if not 1 <= heldout < num_voices:
        raise RecipeError(
            f"data.heldout_voices={heldout} must leave at least one of the {num_voices} voices "
            "for the memory bank (and pretraining)"
        )
    return np.sort(np.random.default_rng(EVAL_SPLIT_SEED).permutation(num_voices)[:heldout])


def decode_clips(
    ds: Any, min_samples: int, key: str
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Every clip of an ssl-data audio dataset, with its label and index in ``ds``.

    Clips shorter than one encoder frame are left out (counted in the log); unreadable ones
    follow the dataset's ``on_corrupt`` policy.

    Args:
        ds: An ssl-data audio dataset with labels (``AudioFolder``, ``SpokenDigits``).
        min_samples: Shortest clip kept, in samples (the encoder's receptive field).
        key: The recipe key the clips come from, for messages.

    Returns:
        N clips ``(T_i,) float32``, their ``(N,) int64`` labels and ``(N,) int64`` indices
        in ``ds``.

    Raises:
        RecipeError: No clip is long enough.
    """
    clips, labels, kept, short = [], [], [], 0
    for i in range(len(ds)):
        j, clip = ds.load(i)
        if len(clip) < min_samples:
            short += 1
            continue
        clips.append(clip.numpy().astype(np.float32))
        labels.append(int(ds.labels[j]))
        kept.append(j)
    if short:
        logger.warning(
            "%s: %d clip(s) shorter than one encoder frame (%d samples) left out",
            key, short, min_samples,
        )  # fmt: skip
    if not clips:
        raise RecipeError(f"{key}: no clip of at least {min_samples} samples")
    return clips, np.asarray(labels, dtype=np.int64), np.asarray(kept, dtype=np.int64)


def open_audio_folder(folder: str, recipe: Recipe, labelled: bool, key: str) -> Any:
    """ssl-data's ``AudioFolder`` at the recipe's ``data.sample_rate`` and ``on_corrupt``.

    Args:
        folder: The folder (``labelled``: one sub-folder of clips per class).
        recipe: The speech recipe.
        labelled: Read class sub-folders as labels.
        key: The recipe key naming the folder, for messages.

    Raises:
        RecipeError: The folder does not exist or holds no clips (or no class sub-folders).
    """
    from ssl_data import DatasetNotFoundError
    from ssl_data.datasets.audio_folder import AudioFolder

    if not Path(folder).is_dir():
        raise RecipeError(f"{key}: folder {folder} does not exist")
    try:
        return AudioFolder(folder, labelled=labelled, sample_rate=recipe.data.sample_rate,
                           on_corrupt=recipe.data.on_corrupt)  # fmt: skip
    except DatasetNotFoundError as err:
        hint = "; it needs one sub-folder of clips per class" if labelled else ""
        raise RecipeError(f"{key}: {err}{hint}") from None


def load_speech_corpus(
    recipe: Recipe, eval_path: str | Path | None = None, pretraining: bool = True
) -> SpeechCorpus:
    """The recipe's clips, decoded at ``data.sample_rate``.

    ``spoken_digits``: ssl-data's :class:`~ssl_data.datasets.SpokenDigits` (``data.voices``,
    rendered into ``data.root``), split by voice: ``data.heldout_voices`` voices (seed 0) are
    the kNN queries, the others the memory bank and the pretraining clips. ``audio_folder``:
    every clip under ``data.path`` (unlabelled) for pretraining; ``data.eval_path`` (or
    ``eval_path``), one sub-folder per class, split per class into memory bank and
    ``data.eval_test_fraction`` of queries (seed 0), when set. ``pretraining=False`` skips an
    audio folder's ``data.path`` (evaluation needs only the labelled clips).

    Raises:
        RecipeError: A missing folder, no readable clip, or too few voices.
    """
    from ssl_data.datasets.spoken_digits import VOICES, SpokenDigits
    from ssl_train.data import split_bank_queries

    d = recipe.data
    start = time.perf_counter()
    shortest = receptive_field(recipe.encoder)
    empty = np.empty(0, dtype=np.int64)
    if d.dataset == "spoken_digits":
        voices = tuple(d.voices) if d.voices is not None else VOICES
        held = split_voices(len(voices), d.heldout_voices)
        ds = SpokenDigits(voices, cache_dir=d.root, sample_rate=d.sample_rate)
        clips, labels, kept = decode_clips(ds, shortest, "data.dataset spoken_digits")
        is_query = np.isin(ds.voice_ids[kept], held)
        bank = [c for c, q in zip(clips, is_query, strict=True) if not q]
        queries = [c for c, q in zip(clips, is_query, strict=True) if q]
        corpus = SpeechCorpus(
            bank[: d.limit], bank, labels[~is_query], queries, labels[is_query],
            tuple(ds.classes), "voices " + ", ".join(voices[i] for i in held),
        )  # fmt: skip
    else:
        if d.path is None and pretraining:
            raise RecipeError(
                "data.path is not set: data.dataset audio_folder needs the folder of your clips "
                "(WAV/FLAC; e.g. --set data.path=my_clips)"
            )
        train: list[np.ndarray] = []
        if pretraining and d.path is not None:
            ds = open_audio_folder(d.path, recipe, False, "data.path")
            train = decode_clips(ds, shortest, "data.path")[0]
        corpus = SpeechCorpus(train[: d.limit], [], empty, [], empty, ())
        folder = eval_path if eval_path is not None else d.eval_path
        if folder is not None:
            key = "--eval-path" if eval_path is not None else "data.eval_path"
            labelled = open_audio_folder(str(folder), recipe, True, key)
            clips, labels, _ = decode_clips(labelled, shortest, key)
            b, q = split_bank_queries(labels, d.eval_test_fraction)
            corpus.bank, corpus.bank_labels = [clips[i] for i in b], labels[b]
            corpus.queries, corpus.query_labels = [clips[i] for i in q], labels[q]
            corpus.label_names = tuple(labelled.classes)
            corpus.heldout = f"{d.eval_test_fraction:g} of each class of {folder}"
    seconds = sum(len(c) for c in corpus.train) / d.sample_rate
    logger.info(
        "data.dataset %s: %d pretraining clips (%.1f min at %d Hz), %d labelled memory-bank "
        "clips, %d held-out queries%s, %.1f s",
        d.dataset, len(corpus.train), seconds / 60, d.sample_rate, len(corpus.bank),
        len(corpus.queries), f" ({corpus.heldout})" if corpus.heldout else "",
        time.perf_counter() - start,
    )  # fmt: skip
    return corpus


class HubertTargets:
    """HuBERT's first-iteration targets: k-means clusters of 39-dim MFCC frames (13 cepstra of
    a 40-band log-mel, 25 ms windows every 10 ms, with deltas and delta-deltas), standardised
    per dimension, fitted once on the pretraining clips (scikit-learn's ``MiniBatchKMeans``
    through ssl-models' :func:`~ssl_models.speech.fit_cluster_centers`) and assigned to every
    crop's frames, then aligned to the encoder's frames.

    Args:
        sample_rate: Rate of the clips, Hz.
        centers: ``(C, 39) float32`` centres (of standardised features).
        mean: ``(39,) float32`` feature mean of the fitting frames.
        std: ``(39,) float32`` their std.

    Reference: Hsu et al., "HuBERT", arXiv:2106.07447, section III-A.
    """

    n_mfcc = 13

    def __init__(
        self, sample_rate: int, centers: np.ndarray, mean: np.ndarray, std: np.ndarray
    ) -> None:
        from ssl_data.audio import LogMelSpectrogram

        self.sample_rate = sample_rate
        self.hop = round(sample_rate / 100)
        self.melspec = LogMelSpectrogram(
            sample_rate=sample_rate, n_fft=round(0.025 * sample_rate), hop_length=self.hop,
            n_mels=40,
        )  # fmt: skip
        self.centers = np.asarray(centers, dtype=np.float32)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    @classmethod
    def features(cls, melspec: Any, x: torch.Tensor, lengths: torch.Tensor) -> list[np.ndarray]:
        """``(F_b, 39) float32`` MFCC + deltas of each row's real frames."""
        from scipy.fft import dct  # type: ignore[import-untyped]

        lm = melspec(x, lengths.numpy()).numpy()  # (B, 40, frames)
        frames = melspec.num_frames(lengths.numpy())
        out = []
        for b in range(len(lm)):
            c = dct(lm[b, :, : frames[b]], type=2, norm="ortho", axis=0)[: cls.n_mfcc].T
            d1 = np.gradient(c, axis=0) if len(c) > 1 else np.zeros_like(c)
            d2 = np.gradient(d1, axis=0) if len(c) > 1 else np.zeros_like(c)
            out.append(np.concatenate([c, d1, d2], axis=1).astype(np.float32))
        return out

    @classmethod
    def fit(
        cls, clips: list[np.ndarray], sample_rate: int, num_clusters: int, seed: int
    ) -> HubertTargets:
        """Fit the k-means on the MFCC frames of normalised ``clips``.

        Raises:
            SslTrainError: Fewer frames than ``num_clusters``.
        """
        from ssl_models.speech import fit_cluster_centers

        start = time.perf_counter()
        probe = cls(sample_rate, np.zeros((1, 39)), np.zeros(39), np.ones(39))
        feats = []
        for s in range(0, len(clips), 64):
            x, lengths = pad_clips([normalize_clip(c) for c in clips[s : s + 64]])
            feats += cls.features(probe.melspec, x, lengths)
        frames = np.concatenate(feats)
        if len(frames) < num_clusters:
            raise SslTrainError(
                f"method.num_clusters={num_clusters} exceeds the {len(frames)} MFCC frames of "
                "the pretraining clips; lower it"
            )
        mean, std = frames.mean(0), frames.std(0) + 1e-6
        centers = fit_cluster_centers((frames - mean) / std, num_clusters, seed=seed, n_init=3)
        logger.info(
            "hubert targets: %d k-means clusters of %d MFCC frames, %.1f s",
            num_clusters, len(frames), time.perf_counter() - start,
        )  # fmt: skip
        return cls(sample_rate, centers, mean, std)

    def save(self, file: Path) -> None:
        """Write centres, mean and std as safetensors (temp file, then rename)."""
        tmp = file.with_name(f".{file.name}.tmp")
        safetensors.numpy.save_file(
            {"centers": self.centers, "mean": self.mean, "std": self.std}, str(tmp),
            metadata={"sample_rate": str(self.sample_rate)},
        )  # fmt: skip
        tmp.replace(file)

    @classmethod
    def load(cls, file: Path, sample_rate: int) -> HubertTargets:
        """Read :meth:`save`'s file."""
        t = safetensors.numpy.load_file(str(file))
        return cls(sample_rate, t["centers"], t["mean"], t["std"])

    def __call__(
        self, x: torch.Tensor, lengths: torch.Tensor, encoder: dict[str, Any], num_frames: int
    ) -> torch.Tensor:
        """``(B, num_frames) int64`` targets of normalised crops, -100 on padding.

        Args:
            x: ``(B, T) float32`` normalised crops, zero-padded.
            lengths: ``(B,) int64`` real lengths in samples.
            encoder: The encoder config (its strides place the frames).
            num_frames: F, the encoder's frames of the padded batch.
        """
        from ssl_data.audio import conv_output_lengths
        from ssl_models.speech import align_labels_to_frames, assign_clusters

        kernel, stride = conv_layout(encoder)
        hop = int(np.prod(stride))
        real = conv_output_lengths(lengths.numpy(), kernel, stride)
        out = torch.full((len(lengths), num_frames), -100, dtype=torch.int64)
        for b, f in enumerate(self.features(self.melspec, x, lengths)):
            labels = assign_clusters((f - self.mean) / self.std, self.centers)
            aligned = align_labels_to_frames(
                labels, int(real[b]), frame_hop=hop, frame_center=receptive_field(encoder) / 2,
                label_hop=self.hop, label_center=0.0,
            )  # fmt: skip
            out[b, : len(aligned)] = torch.from_numpy(aligned)
        return out


class SpeechData:
    """The pretraining clips of a run in memory, and their span-masked crops.

    Args:
        recipe: ``data.sample_rate``, ``data.crop_seconds``, ``views`` (mask), ``encoder``
            (strides), ``seed``.
        corpus: The clips (:func:`load_speech_corpus`).
        targets: HuBERT runs: the k-means targets; None for wav2vec 2.0.

    Attributes:
        num_samples: Pretraining clips.
    """

    unit = "clips"

    def __init__(
        self, recipe: Recipe, corpus: SpeechCorpus, targets: HubertTargets | None = None
    ) -> None:
        self.recipe = recipe
        self.corpus = corpus
        self.targets = targets
        self.num_samples = len(corpus.train)
        self.view = build_speech_views(recipe).build(recipe)
        self.kernel, self.stride = conv_layout(recipe.encoder)

    def batch(self, indices: np.ndarray, epoch: int) -> list[torch.Tensor]:
        """``[input_values (B, T) float32, lengths (B,) int64, mask_time_indices (B, F) bool]``
        (+ ``targets (B, F) int64`` for HuBERT): crops normalised over their real samples,
        trimmed to the longest; the same for the same (indices, epoch) in any process."""
        from ssl_data.audio import conv_output_lengths

        x, lengths, mask = self.view([self.corpus.train[i] for i in indices], indices, epoch)
        longest = int(lengths.max())
        frames = int(conv_output_lengths(longest, self.kernel, self.stride))
        x = normalize_padded(x[:, :longest], lengths)
        views = [x, lengths, mask[:, :frames]]
        if self.targets is not None:
            views.append(self.targets(x, lengths, self.recipe.encoder, frames))
        return views

    def tokens(self, indices: np.ndarray) -> int | None:
        """None: clips have no tokens."""
        return None

    def example_inputs(self) -> dict[str, torch.Tensor]:
        """The first 64 pretraining clips whole, normalised and zero-padded (``input_values
        (N, T) float32``, ``lengths (N,) int64``), for export checks."""
        x, lengths = pad_clips([normalize_clip(c) for c in self.corpus.train[:EXAMPLE_INPUTS]])
        return {"input_values": x, "lengths": lengths}


def load_speech_data(recipe: Recipe, run_dir: Path, is_main: bool, barrier: Any) -> SpeechData:
    """Clips (and, for HuBERT, the k-means targets: fitted by rank 0 unless
    ``run_dir/hubert_targets.safetensors`` exists, then read by every rank) of a speech run."""
    corpus = load_speech_corpus(recipe)
    targets = None
    if recipe.method.get("name") == "hubert":
        file = run_dir / HUBERT_TARGETS_FILE
        if is_main and not file.is_file():
            clusters = int(recipe.method.get("num_clusters", 100))
            HubertTargets.fit(corpus.train, recipe.data.sample_rate, clusters, recipe.seed).save(
                file
            )
        barrier()
        targets = HubertTargets.load(file, recipe.data.sample_rate)
    return SpeechData(recipe, corpus, targets)


def restore_step_schedules(model: torch.nn.Module, step: int, total_steps: int) -> None:
    """Put a resumed speech method's step schedules where ``step`` steps left them.

    wav2vec 2.0's Gumbel temperature is a plain attribute that
    :meth:`~ssl_models.Wav2Vec2.after_optimizer_step` sets from the step alone (no tensor, so
    not in the checkpoint); calling it again with the restored step is all it needs. Other
    methods are left alone (their hook may update an EMA, which must not run twice).
    """
    from ssl_models.speech.wav2vec2 import Wav2Vec2

    if isinstance(model, Wav2Vec2) and step > 0:
        model.after_optimizer_step(step, total_steps)


@torch.no_grad()
def embed_clips(
    model: Any,
    clips: list[np.ndarray],
    batch_size: int = 32,
    device: torch.device | None = None,
) -> np.ndarray:
    """Utterance embeddings (the method's ``embed``: the encoder's frames averaged over each
    clip's real frames) of whole clips, each normalised over its samples, in eval mode (the
    mode is restored after).

    Clips are batched longest first, zero-padded with their lengths, so little compute goes to
    padding.

    Args:
        model: A speech method, unwrapped.
        clips: ``N`` clips, ``(T_i,) float32`` at the run's rate.
        batch_size: Clips per forward pass.
        device: Where the model is; default: the device of its first parameter.

    Returns:
        ``(N, D) float32`` features on the CPU, in the order of ``clips`` (not normalised).
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    order = np.argsort([-len(c) for c in clips], kind="stable")
    out: np.ndarray | None = None
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(order), batch_size):
            sel = order[s : s + batch_size]
            x, lengths = pad_clips([normalize_clip(clips[i]) for i in sel])
            emb = model.embed(x.to(device), lengths.to(device)).float().cpu().numpy()
            if out is None:
                out = np.zeros((len(order), emb.shape[1]), dtype=np.float32)
            out[sel] = emb
    finally:
        model.train(was_training)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


__all__ = [
    "HUBERT_TARGETS_FILE",
    "SPEECH_DATASETS",
    "SPEECH_METHODS",
    "SPEECH_VIEWS",
    "HubertTargets",
    "SpanMaskView",
    "SpeechCorpus",
    "SpeechData",
    "build_speech_views",
    "check_speech_method",
    "embed_clips",
    "load_speech_corpus",
    "load_speech_data",
]
