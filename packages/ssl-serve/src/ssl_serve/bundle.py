"""The bundle description, `bundle.json` (schema in docs/contracts.md), read and validated.

A bundle is a folder a user can copy anywhere: `model.onnx`, `bundle.json` and the training
`recipe.yaml` (image bundles) or the tokenizer's `tokenizer.json` (text bundles); audio bundles
need nothing else. This module only reads and writes `bundle.json`; it imports neither
onnxruntime nor torch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssl_serve.errors import BundleError, InvalidInputError
from ssl_serve.json_fields import JsonFields

BUNDLE_FILE = "bundle.json"
MODEL_FILE = "model.onnx"
RECIPE_FILE = "recipe.yaml"
TOKENIZER_FILE = "tokenizer.json"
FORMAT_VERSION = 1
MODALITIES = ("image", "text", "audio")
RESIZE_FILTERS = ("bilinear", "nearest", "bicubic")
POOLING_MODES = ("mean", "cls", "max")
# Graph inputs of a text bundle, in the order the exporter declares them.
TEXT_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Graph inputs of an audio bundle: the padded waveforms and which samples are real.
AUDIO_INPUT_NAMES = ("input_values", "attention_mask")
# Pooling modes an audio graph offers (over the real frames of each clip).
AUDIO_POOLING_MODES = ("mean",)
# How the server resamples audio to the bundle's rate: soxr's "HQ" recipe (what ssl-data's
# training pipeline uses).
AUDIO_RESAMPLERS = ("soxr_hq",)
# The second graph output of a classifier bundle: softmax class probabilities.
PROBABILITIES_OUTPUT = "probabilities"
# Model names and versions become folder names in a repository.
FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
FOLDER_NAME_RULE = (
    "must start with a letter or digit and hold only letters, digits, '.', '_' and '-'"
)


def check_name_and_version(name: str, version: str) -> None:
    """Check a model name and version before an export writes ``REPOSITORY/NAME/VERSION``.

    Raises:
        InvalidInputError: ``name`` or ``version`` is not a plain folder name
            (:data:`FOLDER_NAME`: e.g. ``"../x"`` or ``""``).
    """
    for label, value in (("name", name), ("version", version)):
        if not FOLDER_NAME.fullmatch(value):
            raise InvalidInputError(
                f"{label} {value!r} {FOLDER_NAME_RULE} (it becomes a folder name)"
            )


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of one model input or output.

    Attributes:
        name: Graph input/output name, e.g. "pixel_values".
        dtype: numpy dtype name, e.g. "float32".
        shape: Dimensions; a string names a dynamic axis (e.g. "batch"), an int is fixed.
    """

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"name", "dtype", "shape"}``."""
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ImagePreprocessing:
    """How the server turns an encoded image into the model's input (docs/contracts.md).

    Decode; convert to "L" (1 channel) or "RGB" (3); resize to ``image_size`` with ``resize``
    filtering when the size differs; multiply by ``scale``; subtract ``mean`` and divide by
    ``std`` per channel; lay out as NCHW float32.

    Attributes:
        image_size: Model input (height, width) in pixels.
        channels: 1 (grayscale) or 3 (RGB).
        resize: Pillow filter name: "bilinear", "nearest" or "bicubic".
        scale: Factor applied to the uint8 pixel values, usually 1/255.
        mean: Per-channel mean subtracted after scaling, ``channels`` values.
        std: Per-channel standard deviation divided by after the mean, ``channels`` values > 0.
        layout: Memory layout of the model input; only "NCHW".
    """

    image_size: tuple[int, int]
    channels: int
    resize: str
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layout: str = "NCHW"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored under ``preprocessing``."""
        return {
            "image_size": list(self.image_size),
            "channels": self.channels,
            "resize": self.resize,
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
            "layout": self.layout,
        }


@dataclass(frozen=True)
class TextPreprocessing:
    """How the server turns text into the model's inputs (a text bundle's ``preprocessing``).

    Tokenise with the bundle's ``tokenizer`` file (Hugging Face ``tokenizers`` JSON) with special
    tokens, truncating to ``max_length`` tokens special tokens included; pad each sub-batch to
    its longest sequence with ``pad_id`` (attention mask 0). The padding and truncation settings
    stored inside the tokenizer file are ignored: these are the server's.

    Attributes:
        tokenizer: File name of the tokenizer inside the bundle, "tokenizer.json".
        max_length: Longest sequence the model is fed, in tokens (special tokens counted).
        pooling: How the graph pools token states into one vector: "mean" (over real tokens,
            by the attention mask), "cls" (the first token) or "max" (over real tokens).
        pad_id: Token id used for padding.
    """

    tokenizer: str
    max_length: int
    pooling: str
    pad_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored under ``preprocessing``."""
        return {
            "tokenizer": self.tokenizer,
            "max_length": self.max_length,
            "pooling": self.pooling,
            "pad_id": self.pad_id,
        }


@dataclass(frozen=True)
class AudioPreprocessing:
    """How the server turns audio into the model's inputs (an audio bundle's ``preprocessing``).

    Decode WAV or FLAC bytes with libsndfile (``soundfile``) as float32 in [-1, 1] and mix the
    channels down to mono (their mean), or take raw mono float32 samples with their rate;
    resample to ``sample_rate`` with ``resampler``; refuse clips shorter than ``min_samples``
    or longer than ``max_seconds``; zero-pad a batch on the right to its longest clip, with an
    ``attention_mask`` of 1 on real samples and 0 on padding. The graph itself normalises each
    clip over its real samples when ``normalize`` is set (zero mean, unit variance, as wav2vec
    2.0's feature extractor), runs the encoder and pools its frames with ``pooling`` over each
    clip's real frames only, so a clip embeds the same alone or padded beside a longer one.

    Attributes:
        sample_rate: Rate the model takes, in Hz (16000 for wav2vec 2.0 and HuBERT).
        max_seconds: Longest clip accepted, in seconds (at any input rate).
        min_samples: Shortest clip accepted, in samples at ``sample_rate``: the receptive field
            of one frame (400 = 25 ms at 16 kHz for wav2vec 2.0); a shorter clip has no frame.
        samples_per_frame: Hop between frames, in samples at ``sample_rate`` (320 = 20 ms).
        pooling: How the graph pools frames: "mean" (over real frames).
        normalize: Whether the graph normalises each clip to zero mean and unit variance over
            its real samples before the encoder.
        resampler: How the server resamples: "soxr_hq" (soxr's HQ recipe).
    """

    sample_rate: int
    max_seconds: float
    min_samples: int
    samples_per_frame: int
    pooling: str = "mean"
    normalize: bool = True
    resampler: str = "soxr_hq"

    @property
    def max_samples(self) -> int:
        """Longest clip accepted, in samples at ``sample_rate``."""
        return int(self.max_seconds * self.sample_rate)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored under ``preprocessing``."""
        return {
            "sample_rate": self.sample_rate,
            "max_seconds": self.max_seconds,
            "min_samples": self.min_samples,
            "samples_per_frame": self.samples_per_frame,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "resampler": self.resampler,
        }


@dataclass(frozen=True)
class Bundle:
    """The parsed contents of a `bundle.json`.

    Attributes:
        name: Model name given at export.
        version: Model version given at export.
        modality: What the model embeds: "image", "text" or "audio".
        inputs: The graph inputs; image bundles have one, ``pixel_values (batch, C, H, W)``
            float32; text bundles have ``input_ids``, ``attention_mask`` and, when the model
            uses them, ``token_type_ids``, each ``(batch, sequence)`` int64; audio bundles have
            ``input_values (batch, samples)`` float32 and ``attention_mask (batch, samples)``
            int64.
        outputs: The graph outputs: ``embedding (batch, embedding_dim) float32`` and, for a
            classifier bundle, ``probabilities (batch, len(labels)) float32`` (softmax over the
            classes inside the graph, rows summing to 1).
        embedding_dim: Width D of the embeddings.
        normalized: Whether the graph L2-normalises the embeddings.
        preprocessing: Image, text or audio preprocessing parameters (matching ``modality``).
        validation: Export-time parity figures (free-form, e.g. ``max_abs_diff``).
        provenance: Where the model came from (free-form: recipe hash, checkpoint, versions).
        format_version: Schema version of `bundle.json`; this release reads 1.
        labels: Class names of a classifier bundle, ``labels[i]`` naming probability ``i``;
            None for an embedding-only bundle (bundle.json then has no ``labels`` key).
    """

    name: str
    version: str
    modality: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    embedding_dim: int
    normalized: bool
    preprocessing: ImagePreprocessing | TextPreprocessing | AudioPreprocessing
    validation: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    labels: tuple[str, ...] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | Path = BUNDLE_FILE) -> Bundle:
        """Validate a decoded `bundle.json`.

        Args:
            data: The decoded JSON object.
            source: File named in error messages.

        Returns:
            The bundle.

        Raises:
            BundleError: A key is missing, unknown, of the wrong type or inconsistent with
                another (the message names the file, the key and the bad value).
        """
        r = _BundleReader(source)
        top = r.mapping(
            data, "", required=_TOP_KEYS, optional=("validation", "provenance", "labels")
        )
        version = r.typed(top, "format_version", int)
        if version != FORMAT_VERSION:
            r.fail("format_version", f"is {version}; this ssl-serve reads {FORMAT_VERSION}")
        modality = r.typed(top, "modality", str)
        if modality not in MODALITIES:
            r.fail("modality", f"is {modality!r}; this ssl-serve serves {list(MODALITIES)}")
        counts = {"image": (1,), "text": (2, 3), "audio": (2,)}[modality]
        inputs = r.specs(top, "inputs", counts=counts)
        labels = r.labels(top)
        outputs = r.specs(top, "outputs", counts=(1,) if labels is None else (2,))
        dim = r.typed(top, "embedding_dim", int)
        if dim <= 0:
            r.fail("embedding_dim", f"must be > 0, got {dim}")
        prep: ImagePreprocessing | TextPreprocessing | AudioPreprocessing
        if modality == "image":
            prep = r.image_preprocessing(top["preprocessing"])
        elif modality == "audio":
            prep = r.audio_preprocessing(top["preprocessing"])
        else:
            prep = r.text_preprocessing(top["preprocessing"])
        bundle = cls(
            name=r.typed(top, "name", str),
            version=r.typed(top, "version", str),
            modality=modality,
            inputs=inputs,
            outputs=outputs,
            embedding_dim=dim,
            normalized=r.typed(top, "normalized", bool),
            preprocessing=prep,
            validation=dict(r.typed(top, "validation", dict, default={})),
            provenance=dict(r.typed(top, "provenance", dict, default={})),
            format_version=version,
            labels=labels,
        )
        r.check_consistency(bundle)
        return bundle

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; ``Bundle.from_dict(b.to_dict()) == b``."""
        labels = {} if self.labels is None else {"labels": list(self.labels)}
        return {
            "format_version": self.format_version,
            "name": self.name,
            "version": self.version,
            "modality": self.modality,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "embedding_dim": self.embedding_dim,
            "normalized": self.normalized,
            "preprocessing": self.preprocessing.to_dict(),
            **labels,
            "validation": dict(self.validation),
            "provenance": dict(self.provenance),
        }

    def to_json(self) -> str:
        """`bundle.json` text: indented JSON with a final newline."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @property
    def input(self) -> TensorSpec:
        """The first graph input (image bundles have exactly one; text: ``input_ids``; audio:
        ``input_values``)."""
        return self.inputs[0]

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of every graph input, in bundle.json order."""
        return tuple(s.name for s in self.inputs)

    @property
    def output(self) -> TensorSpec:
        """The first graph output, the embeddings."""
        return self.outputs[0]

    @property
    def is_classifier(self) -> bool:
        """Whether the bundle has class ``labels`` and a ``probabilities`` output."""
        return self.labels is not None


def read_bundle(path: str | Path) -> Bundle:
    """Read and validate a `bundle.json`.

    Args:
        path: The bundle folder, or the `bundle.json` file itself.

    Returns:
        The validated bundle.

    Raises:
        BundleError: The file is missing, is not JSON, or fails validation.
    """
    file = Path(path)
    if file.is_dir():
        file = file / BUNDLE_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(file, f"missing; a bundle folder holds {BUNDLE_FILE}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(file, f"cannot read it as JSON: {e}") from e
    return Bundle.from_dict(data, source=file)


def write_bundle(bundle: Bundle, folder: str | Path) -> Path:
    """Write ``bundle`` as ``<folder>/bundle.json`` and return that path (folder must exist)."""
    file = Path(folder) / BUNDLE_FILE
    file.write_text(bundle.to_json(), encoding="utf-8")
    return file


_TOP_KEYS = (
    "format_version",
    "name",
    "version",
    "modality",
    "inputs",
    "outputs",
    "embedding_dim",
    "normalized",
    "preprocessing",
)
_P = "preprocessing."
_PREP_KEYS = ("image_size", "channels", "resize", "scale", "mean", "std", "layout")


class _BundleReader(JsonFields):
    """Reads the bundle-specific parts of bundle.json (see :class:`JsonFields`)."""

    def specs(
        self, top: Mapping[str, Any], key: str, counts: tuple[int, ...]
    ) -> tuple[TensorSpec, ...]:
        value = top[key]
        if not isinstance(value, list) or len(value) not in counts:
            wanted = " or ".join(map(str, counts))
            self.fail(key, f"must list {wanted} tensor(s), got {value!r}")
        specs = []
        for i, item in enumerate(value):
            where = f"{key}[{i}]"
            spec = self.mapping(item, where, required=("name", "dtype", "shape"))
            shape = spec["shape"]
            if not isinstance(shape, list) or not all(
                isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool) and d > 0)
                for d in shape
            ):
                self.fail(f"{where}.shape", f"must list axis names or sizes > 0, got {shape!r}")
            specs.append(
                TensorSpec(
                    self.typed(spec, "name", str, prefix=f"{where}."),
                    self.typed(spec, "dtype", str, prefix=f"{where}."),
                    tuple(shape),
                )
            )
        return tuple(specs)

    def labels(self, top: Mapping[str, Any]) -> tuple[str, ...] | None:
        if "labels" not in top:
            return None
        value = top["labels"]
        if (
            not isinstance(value, list)
            or len(value) < 2
            or not all(isinstance(v, str) and v for v in value)
            or len(set(value)) != len(value)
        ):
            self.fail("labels", f"must list >= 2 distinct non-empty class names, got {value!r}")
        return tuple(value)

    def text_preprocessing(self, value: Any) -> TextPreprocessing:
        prep = self.mapping(
            value, "preprocessing", required=("tokenizer", "max_length", "pooling", "pad_id")
        )
        tokenizer = self.typed(prep, "tokenizer", str, prefix=_P)
        if tokenizer != TOKENIZER_FILE:
            self.fail("preprocessing.tokenizer", f"is {tokenizer!r}; expected {TOKENIZER_FILE!r}")
        max_length = self.typed(prep, "max_length", int, prefix=_P)
        if max_length < 2:
            self.fail("preprocessing.max_length", f"must be >= 2 tokens, got {max_length}")
        pooling = self.typed(prep, "pooling", str, prefix=_P)
        if pooling not in POOLING_MODES:
            self.fail("preprocessing.pooling", f"is {pooling!r}; known: {list(POOLING_MODES)}")
        pad_id = self.typed(prep, "pad_id", int, prefix=_P)
        if pad_id < 0:
            self.fail("preprocessing.pad_id", f"must be >= 0, got {pad_id}")
        return TextPreprocessing(tokenizer, max_length, pooling, pad_id)

    def audio_preprocessing(self, value: Any) -> AudioPreprocessing:
        keys = tuple(AudioPreprocessing.__dataclass_fields__)
        prep = self.mapping(value, "preprocessing", required=keys)
        rate = self.typed(prep, "sample_rate", int, prefix=_P)
        if rate <= 0:
            self.fail("preprocessing.sample_rate", f"must be > 0 Hz, got {rate}")
        max_seconds = self.typed(prep, "max_seconds", float, prefix=_P)
        if not max_seconds > 0 or max_seconds == float("inf"):
            self.fail("preprocessing.max_seconds", f"must be > 0 seconds, got {max_seconds}")
        min_samples = self.typed(prep, "min_samples", int, prefix=_P)
        if not 1 <= min_samples <= max_seconds * rate:
            self.fail(
                "preprocessing.min_samples",
                f"must be >= 1 and <= max_seconds * sample_rate ({max_seconds * rate:g}), "
                f"got {min_samples}",
            )
        hop = self.typed(prep, "samples_per_frame", int, prefix=_P)
        if hop < 1:
            self.fail("preprocessing.samples_per_frame", f"must be >= 1, got {hop}")
        pooling = self.typed(prep, "pooling", str, prefix=_P)
        if pooling not in AUDIO_POOLING_MODES:
            self.fail(
                "preprocessing.pooling", f"is {pooling!r}; known: {list(AUDIO_POOLING_MODES)}"
            )
        resampler = self.typed(prep, "resampler", str, prefix=_P)
        if resampler not in AUDIO_RESAMPLERS:
            self.fail(
                "preprocessing.resampler", f"is {resampler!r}; known: {list(AUDIO_RESAMPLERS)}"
            )
        return AudioPreprocessing(
            sample_rate=rate,
            max_seconds=max_seconds,
            min_samples=min_samples,
            samples_per_frame=hop,
            pooling=pooling,
            normalize=self.typed(prep, "normalize", bool, prefix=_P),
            resampler=resampler,
        )

    def image_preprocessing(self, value: Any) -> ImagePreprocessing:
        prep = self.mapping(value, "preprocessing", required=_PREP_KEYS)
        size = self.numbers(prep, "image_size", int, _P)
        if len(size) != 2 or min(size) <= 0:
            self.fail("preprocessing.image_size", f"must be [height, width] > 0, got {size}")
        channels = self.typed(prep, "channels", int, prefix=_P)
        if channels not in (1, 3):
            self.fail("preprocessing.channels", f"must be 1 or 3, got {channels}")
        mean = self.numbers(prep, "mean", float, _P)
        std = self.numbers(prep, "std", float, _P)
        for name, values in (("mean", mean), ("std", std)):
            if len(values) != channels:
                self.fail(
                    f"preprocessing.{name}", f"has {len(values)} values for {channels} channels"
                )
        if min(std) <= 0:
            self.fail("preprocessing.std", f"must be > 0, got {list(std)}")
        resize = self.typed(prep, "resize", str, prefix=_P)
        if resize not in RESIZE_FILTERS:
            self.fail("preprocessing.resize", f"is {resize!r}; known: {list(RESIZE_FILTERS)}")
        layout = self.typed(prep, "layout", str, prefix=_P)
        if layout != "NCHW":
            self.fail("preprocessing.layout", f"is {layout!r}; only 'NCHW' is supported")
        return ImagePreprocessing(
            image_size=(size[0], size[1]),
            channels=channels,
            resize=resize,
            scale=self.typed(prep, "scale", float, prefix=_P),
            mean=mean,
            std=std,
            layout=layout,
        )

    def check_consistency(self, b: Bundle) -> None:
        self._check_output(b)
        p = b.preprocessing
        if isinstance(p, AudioPreprocessing):
            got = [(s.name, s.dtype, len(s.shape)) for s in b.inputs]
            want = [(AUDIO_INPUT_NAMES[0], "float32", 2), (AUDIO_INPUT_NAMES[1], "int64", 2)]
            if got != want:
                self.fail(
                    "inputs",
                    f"are {[s.to_dict() for s in b.inputs]}; an audio bundle takes "
                    "'input_values' float32 [batch, samples] and 'attention_mask' int64 "
                    "[batch, samples]",
                )
            return
        if isinstance(p, TextPreprocessing):
            names = [s.name for s in b.inputs]
            if names[:2] != list(TEXT_INPUT_NAMES[:2]) or not set(names) <= set(TEXT_INPUT_NAMES):
                self.fail(
                    "inputs",
                    f"are {names}; a text bundle takes {list(TEXT_INPUT_NAMES[:2])} and "
                    "optionally 'token_type_ids'",
                )
            for i, s in enumerate(b.inputs):
                if s.dtype != "int64" or len(s.shape) != 2:
                    self.fail(
                        f"inputs[{i}]",
                        f"is {s.dtype} {list(s.shape)}; text inputs are int64 [batch, sequence]",
                    )
            return
        expected = [p.channels, *p.image_size]
        if b.input.dtype != "float32" or list(b.input.shape[1:]) != expected:
            self.fail(
                "inputs[0]",
                f"is {b.input.dtype} {list(b.input.shape)}; preprocessing makes float32 "
                f"['batch', {', '.join(map(str, expected))}]",
            )

    def _check_output(self, b: Bundle) -> None:
        if b.labels is not None:
            probs = b.outputs[1]
            want = ["batch", len(b.labels)]
            if (
                probs.name != PROBABILITIES_OUTPUT
                or probs.dtype != "float32"
                or len(probs.shape) != 2
                or probs.shape[1] != len(b.labels)
            ):
                self.fail(
                    "outputs[1]",
                    f"is {probs.name!r} {probs.dtype} {list(probs.shape)}; {len(b.labels)} labels "
                    f"need {PROBABILITIES_OUTPUT!r} float32 {want}",
                )
        if b.output.dtype != "float32" or list(b.output.shape[1:]) != [b.embedding_dim]:
            self.fail(
                "outputs[0]",
                f"is {b.output.dtype} {list(b.output.shape)}; embedding_dim {b.embedding_dim} "
                f"needs float32 ['batch', {b.embedding_dim}]",
            )
