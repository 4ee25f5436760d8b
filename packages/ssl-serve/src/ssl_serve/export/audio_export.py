"""Audio bundles: a local Hugging Face wav2vec 2.0 / HuBERT model, or ssl-models' speech encoder.

The graph (:class:`~ssl_serve.export.audio_graph.AudioEmbeddingModel`) takes zero-padded raw
waveforms and their attention mask, normalises each clip over its real samples, encodes, mean-
pools the real frames and L2-normalises. The export validates it with onnxruntime against
PyTorch run on each real recording alone, the recordings preprocessed exactly as the server does
(:mod:`ssl_serve.preprocess.audio`: decode, mono, soxr resampling to the model's rate).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ssl_serve.bundle import (
    AUDIO_INPUT_NAMES,
    PROBABILITIES_OUTPUT,
    AudioPreprocessing,
    Bundle,
    TensorSpec,
    check_name_and_version,
    write_bundle,
)
from ssl_serve.errors import CheckpointError, InvalidInputError
from ssl_serve.export.audio_graph import (
    WAVEFORM_NORM_EPS,
    AudioClassifierModel,
    AudioEmbeddingModel,
    export_audio_onnx,
)
from ssl_serve.export.bundle_export import (
    _version,
    _writable_output,
    _write_atomically,
)
from ssl_serve.export.checkpoint import ClassifierHead
from ssl_serve.export.onnx_graph import OUTPUT_NAME
from ssl_serve.export.validate import (
    compare_embeddings,
    onnx_audio_embeddings,
    validate_audio_export,
    validate_audio_probabilities,
)
from ssl_serve.export.variants import INT8_MIN_COSINE, make_variants
from ssl_serve.preprocess.audio import pad_audio, preprocess_audio

# transformers model types whose structure AudioEmbeddingModel knows (and the tests cover).
AUDIO_MODEL_TYPES = ("wav2vec2", "hubert")
DEFAULT_MAX_SECONDS = 30.0
# Real speech installed by Debian packages (ENVIRONMENT.md): five LibriVox utterances (16 kHz,
# 3.0-7.1 s) and the Asterisk digit prompts of two speakers (8 kHz, about 0.5 s).
LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
ASTERISK_DIR = Path("/usr/share/asterisk/sounds")
_ASTERISK_DIGITS = (("en_US_f_Allison", "01234"), ("fr_CA_f_June", "56789"))
# A clip's PyTorch embedding, (T,) float32 at the model's rate -> (D,) float32 (or its class
# probabilities, (K,) float32).
Reference = Callable[[np.ndarray], np.ndarray]


def default_validation_recordings() -> list[Path]:
    """Real speech for export validation, at two input rates (so resampling is exercised).

    The LibriVox utterances of ``pocketsphinx-testdata`` (16 kHz) and ten Asterisk digit
    prompts, five per speaker (8 kHz, ``asterisk-core-sounds-en-wav`` / ``-fr-wav``); when the
    Debian packages are missing, the Asterisk digits ssl-data ships (FLAC), if ssl-data is
    installed.

    Returns:
        The files, LibriVox first.

    Raises:
        InvalidInputError: No recording is found (install the packages, or pass your own).
    """
    files = sorted(LIBRIVOX_DIR.glob("*.wav"))
    roots = [ASTERISK_DIR]
    spec = importlib.util.find_spec("ssl_data")  # locates the package without importing it
    if spec is not None and spec.submodule_search_locations:
        roots.append(Path(next(iter(spec.submodule_search_locations))) / "samples" / "asterisk")
    for root in roots:
        found = [
            path
            for speaker, digits in _ASTERISK_DIGITS
            for d in digits
            for path in (root / speaker / "digits" / f"{d}{ext}" for ext in (".wav", ".flac"))
            if path.is_file()
        ]
        if found:
            files += found
            break
    if not files:
        raise InvalidInputError(
            f"no validation recordings: install Debian's pocketsphinx-testdata ({LIBRIVOX_DIR}) "
            "or asterisk-core-sounds-en-wav, or pass real speech files (--validation-audio)"
        )
    return files


def zero_mean_unit_var(clip: np.ndarray) -> np.ndarray:
    """wav2vec 2.0's waveform normalisation of one unpadded clip (transformers'
    ``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm``), in float64 then float32.

    Args:
        clip: ``(T,) float32``.

    Returns:
        ``(T,) float32`` ``(clip - mean) / sqrt(var + 1e-7)``.
    """
    x = clip.astype(np.float64)
    return ((x - x.mean()) / np.sqrt(x.var() + WAVEFORM_NORM_EPS)).astype(np.float32)


def export_audio_encoder(
    graph: AudioEmbeddingModel,
    reference: Reference,
    output: str | Path,
    *,
    name: str,
    version: str = "1",
    sample_rate: int = 16000,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    validation_audio: Sequence[str | Path] | None = None,
    provenance: dict[str, Any] | None = None,
    tolerance: float = 1e-4,
    opset: int = 17,
    overwrite: bool = False,
    optimize: bool = False,
    quantize: str | None = None,
    int8_min_cosine: float = INT8_MIN_COSINE,
    extra_files: Mapping[str, bytes] | None = None,
    labels: Sequence[str] | None = None,
    probabilities_reference: Reference | None = None,
) -> dict[str, Any]:
    """Export an audio graph as a validated audio bundle, written atomically.

    The validation recordings are read as bytes and preprocessed by the server's own code
    (:func:`~ssl_serve.preprocess.preprocess_audio`); PyTorch (``reference``) embeds each clip
    alone; onnxruntime embeds them in input order, zero-padded in chunks of all N, 3 and 1
    clips (the export traced a padded batch of 2), so short clips sit beside long ones.

    Args:
        graph: The audio embedding model, eval mode.
        reference: PyTorch's embedding of one clip alone, ``(T,) float32 -> (D,) float32``
            (independent of ``graph``: e.g. the Hugging Face model's own forward).
        output: The bundle folder to create, e.g. ``<repository>/<name>/<version>``.
        name: Model name (letters, digits, ".", "_", "-").
        version: Model version (same characters).
        sample_rate: The model's input rate in Hz.
        max_seconds: Longest clip the server accepts, in seconds (> 0).
        validation_audio: Real speech files (WAV/FLAC); None uses
            :func:`default_validation_recordings`.
        provenance: Extra provenance keys (where the model came from).
        tolerance: Largest accepted max abs difference (and 1 - min cosine).
        opset: ONNX opset version.
        overwrite: Replace ``output`` when it is an existing bundle folder.
        optimize: Store onnxruntime's offline graph optimisation, validated.
        quantize: "int8" stores a dynamic int8 model, validated to ``int8_min_cosine``.
        int8_min_cosine: Smallest accepted int8 cosine similarity with PyTorch.
        extra_files: File name -> bytes written into the bundle too (e.g. ``recipe.yaml``).
        labels: K class names of an :class:`~ssl_serve.export.audio_graph.AudioClassifierModel`
            graph (written to bundle.json; ``labels[i]`` names probability i); None for an
            embedding graph.
        probabilities_reference: With ``labels``: PyTorch's class probabilities of one clip
            alone, ``(T,) float32 -> (K,) float32``; checked against the graph's
            ``probabilities`` output (``validation.probabilities``, see
            :func:`~ssl_serve.export.validate.validate_audio_probabilities`).

    Returns:
        The bundle.json contents written.

    Raises:
        InvalidInputError: A bad name, version, rate or ``max_seconds``; no recordings; a
            recording the server would refuse (the message names the file); or
            ``optimize``/``quantize`` with ``labels`` (a classifier's probabilities would go
            unvalidated).
        ValueError: ``labels`` and ``probabilities_reference`` given without a classifier
            graph, or a classifier graph without them, or a number of labels other than K.
        FileExistsError: ``output`` exists and may not be replaced.
        ExportValidationError: onnxruntime disagrees with PyTorch beyond ``tolerance``, or a
            variant fails its check; nothing is written then.
    """
    check_name_and_version(name, version)
    if sample_rate <= 0 or not 0 < max_seconds < float("inf"):
        raise InvalidInputError(
            f"sample_rate ({sample_rate} Hz) and max_seconds ({max_seconds} s) must be > 0"
        )
    classifier = isinstance(graph, AudioClassifierModel)
    if classifier != (labels is not None) or classifier != (probabilities_reference is not None):
        raise ValueError(
            "labels and probabilities_reference go with an AudioClassifierModel graph, and only "
            "with one"
        )
    if isinstance(graph, AudioClassifierModel) and len(labels or ()) != graph.num_classes:
        raise ValueError(f"{len(labels or ())} labels for a head of {graph.num_classes} classes")
    if labels is not None and (optimize or quantize is not None):
        raise InvalidInputError(
            "an audio classifier bundle: --optimize/--quantize validate only embeddings, so "
            "they are not offered for classifier bundles yet: export without them"
        )
    output = _writable_output(output, overwrite)
    graph = graph.eval()
    prep = AudioPreprocessing(
        sample_rate=sample_rate,
        max_seconds=float(max_seconds),
        min_samples=graph.receptive_field,
        samples_per_frame=graph.samples_per_frame,
        pooling=graph.pooling,
        normalize=graph.normalize,
    )
    files = [Path(f) for f in validation_audio] if validation_audio is not None else None
    files = files if files is not None else default_validation_recordings()
    if not files:
        raise InvalidInputError("validation_audio is empty; pass real speech files")
    clips, rates = _read_recordings(files, prep)
    ref = np.stack([reference(c) for c in clips]).astype(np.float32)
    ref_probs = (
        None
        if probabilities_reference is None
        else np.stack([probabilities_reference(c) for c in clips]).astype(np.float32)
    )
    shortest = min(clips, key=len)
    # A real clip beside a shorter cut of itself: the trace sees a padded batch.
    example = pad_audio([shortest, shortest[: max(prep.min_samples, 2 * len(shortest) // 3)]])
    n = len(clips)
    batch_sizes = list(dict.fromkeys((n, min(3, n), 1)))

    def write(tmp: Path) -> dict[str, Any]:
        onnx_path = tmp / "model.onnx"
        tensors = [torch.from_numpy(example[k]) for k in AUDIO_INPUT_NAMES]
        export_audio_onnx(graph, tensors, onnx_path, opset=opset)
        validation = validate_audio_export(
            onnx_path, ref, clips, batch_sizes=batch_sizes, tolerance=tolerance
        )
        seconds = [len(c) / sample_rate for c in clips]
        validation.update(
            {
                "export_batch": 2,
                "clip_seconds": [round(min(seconds), 4), round(max(seconds), 4)],
                "source_rates": sorted(set(rates)),
                "recordings": ["/".join(f.parts[-3:]) for f in files],
            }
        )
        if ref_probs is not None:
            validation["probabilities"] = validate_audio_probabilities(
                onnx_path, ref_probs, clips, batch_sizes=batch_sizes, tolerance=tolerance
            )
        if optimize or quantize is not None:

            def figures(path: Path) -> dict[str, Any]:
                emb = onnx_audio_embeddings(path, clips, batch_size=n)
                return dict(compare_embeddings(ref, emb))

            validation.update(
                make_variants(
                    onnx_path,
                    optimize=optimize,
                    quantize=quantize,
                    feeds=pad_audio(clips),
                    validate=figures,
                    tolerance=tolerance,
                    int8_min_cosine=int8_min_cosine,
                    # The feature encoder's convolutions read raw waveforms; int8 weights
                    # there cost far more accuracy than they save (the transformer's MatMuls
                    # hold most weights).
                    int8_op_types=("MatMul",),
                )
            )
        dim = graph.output_dim
        outputs = [TensorSpec(OUTPUT_NAME, "float32", ("batch", dim))]
        if labels is not None:
            outputs.append(TensorSpec(PROBABILITIES_OUTPUT, "float32", ("batch", len(labels))))
        bundle = Bundle(
            name=name,
            version=version,
            modality="audio",
            inputs=(
                TensorSpec(AUDIO_INPUT_NAMES[0], "float32", ("batch", "samples")),
                TensorSpec(AUDIO_INPUT_NAMES[1], "int64", ("batch", "samples")),
            ),
            outputs=tuple(outputs),
            embedding_dim=dim,
            normalized=True,
            preprocessing=prep,
            validation=validation,
            provenance={
                **(provenance or {}),
                "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "versions": {
                    **{
                        d.replace("-", "_"): _version(d)
                        for d in ("ssl-serve", "transformers", "torch", "onnx", "onnxruntime")
                    },
                    "soundfile": _version("soundfile"),
                    "soxr": _version("soxr"),
                    "opset": opset,
                },
            },
            labels=None if labels is None else tuple(labels),
        )
        write_bundle(bundle, tmp)
        for file_name, data in (extra_files or {}).items():
            (tmp / file_name).write_bytes(data)
        return bundle.to_dict()

    return _write_atomically(output, write, overwrite=overwrite)


def export_hf_audio_model(
    model_dir: str | Path,
    output: str | Path,
    *,
    name: str,
    version: str = "1",
    max_seconds: float = DEFAULT_MAX_SECONDS,
    validation_audio: Sequence[str | Path] | None = None,
    tolerance: float = 1e-4,
    opset: int = 17,
    overwrite: bool = False,
    optimize: bool = False,
    quantize: str | None = None,
    int8_min_cosine: float = INT8_MIN_COSINE,
) -> dict[str, Any]:
    """Export a local Hugging Face wav2vec 2.0 / HuBERT folder as an audio bundle.

    Loads ``config.json`` + weights offline with ``AutoModel`` (eager attention, float32, eval;
    a ``...ForCTC`` or ``...ForPreTraining`` folder gives its base model) and reads
    ``preprocessor_config.json`` when present: ``sampling_rate`` (default 16000 Hz) and
    ``do_normalize`` (default true). The PyTorch reference is the model's own forward on each
    clip alone (normalised as ``Wav2Vec2FeatureExtractor`` does, when ``do_normalize``), its
    frames averaged and L2-normalised. See :func:`export_audio_encoder` for the rest.

    Args:
        model_dir: Folder saved with ``save_pretrained`` (``config.json``, weights; optional
            ``preprocessor_config.json``).
        output: The bundle folder to create.
        name: Model name.
        version: Model version.
        max_seconds: Longest clip the server accepts, in seconds.
        validation_audio: Real speech files; None uses :func:`default_validation_recordings`.
        tolerance: Largest accepted max abs difference (and 1 - min cosine).
        opset: ONNX opset version.
        overwrite: Replace ``output`` when it is an existing bundle folder.
        optimize: Store onnxruntime's offline graph optimisation, validated.
        quantize: "int8" stores a dynamic int8 model.
        int8_min_cosine: Smallest accepted int8 cosine similarity with PyTorch.

    Returns:
        The bundle.json contents written.

    Raises:
        CheckpointError: The folder cannot be loaded, is not a wav2vec 2.0 / HuBERT model, or
            has an unusable ``preprocessor_config.json``.
        InvalidInputError, FileExistsError, ExportValidationError: See
            :func:`export_audio_encoder`.
    """
    from transformers import AutoConfig, AutoModel

    folder = Path(model_dir)
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder}: transformers cannot load the config: {e}") from e
    if config.model_type not in AUDIO_MODEL_TYPES:
        raise CheckpointError(
            f"{folder} holds a {config.model_type!r} model; audio export supports "
            f"{list(AUDIO_MODEL_TYPES)}"
        )
    rate, normalize = _feature_extractor_settings(folder)
    try:
        model = AutoModel.from_pretrained(
            folder, local_files_only=True, attn_implementation="eager"
        )
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder}: transformers cannot load the model: {e}") from e
    model = model.float().eval()
    try:
        graph = AudioEmbeddingModel(model, normalize=normalize)
    except ValueError as e:
        raise CheckpointError(f"{folder}: {e}") from None

    def reference(clip: np.ndarray) -> np.ndarray:
        x = zero_mean_unit_var(clip) if normalize else clip
        with torch.inference_mode():
            states = model(input_values=torch.from_numpy(x)[None]).last_hidden_state
            return F.normalize(states.mean(dim=1), p=2.0, dim=1)[0].numpy()

    return export_audio_encoder(
        graph,
        reference,
        output,
        name=name,
        version=version,
        sample_rate=rate,
        max_seconds=max_seconds,
        validation_audio=validation_audio,
        provenance={
            "hf_model": str(folder.resolve()),
            "architecture": type(model).__name__,
            "feat_extract_norm": getattr(config, "feat_extract_norm", None),
            "feature_extractor": {"sampling_rate": rate, "do_normalize": normalize},
        },
        tolerance=tolerance,
        opset=opset,
        overwrite=overwrite,
        optimize=optimize,
        quantize=quantize,
        int8_min_cosine=int8_min_cosine,
    )


def export_speech_encoder(
    encoder: torch.nn.Module,
    output: str | Path,
    *,
    name: str,
    version: str = "1",
    sample_rate: int = 16000,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    validation_audio: Sequence[str | Path] | None = None,
    provenance: dict[str, Any] | None = None,
    tolerance: float = 1e-4,
    opset: int = 17,
    overwrite: bool = False,
    extra_files: Mapping[str, bytes] | None = None,
    classifier: ClassifierHead | None = None,
) -> dict[str, Any]:
    """Export ssl-models' wav2vec 2.0 speech encoder (``ssl_models.SpeechEncoder``), alone or
    with a fine-tuned classifier head.

    Its input contract is a waveform normalised per clip to zero mean and unit variance over
    the real samples, at the rate its strides were chosen for; the graph does that
    normalisation, so the server sends raw samples. The reference is the encoder's own
    ``forward`` (mean over real frames) on each normalised clip alone, L2-normalised. The
    encoder's transformer is switched to eager attention (same values; its mask construction
    traces reliably).

    With ``classifier`` (``ssl-train finetune`` of a speech run), the bundle is an audio
    classifier bundle: a second output ``probabilities (batch, K) float32``, the softmax of the
    head (batch norm folded in) on the pooled features before L2 normalisation
    (:class:`~ssl_serve.export.audio_graph.AudioClassifierModel`), and bundle.json ``labels``;
    the probabilities are validated against ``softmax(classifier.head(encoder(clip)))`` on
    each normalised clip alone, as ssl-train's ``EncoderClassifier`` computes them.

    Args:
        encoder: A ``SpeechEncoder`` (its ``wav2vec2`` attribute is a ``Wav2Vec2Model``).
        output: The bundle folder to create.
        name: Model name.
        version: Model version.
        sample_rate: The rate the encoder was trained at, in Hz.
        max_seconds: Longest clip the server accepts, in seconds.
        validation_audio: Real speech files; None uses :func:`default_validation_recordings`.
        provenance: Extra provenance keys (e.g. the run and step it came from).
        tolerance: Largest accepted max abs difference (and 1 - min cosine).
        opset: ONNX opset version.
        overwrite: Replace ``output`` when it is an existing bundle folder.
        extra_files: File name -> bytes written into the bundle too (e.g. ``recipe.yaml``).
        classifier: A fine-tuned head on ``encoder`` (``load_classifier_head``); None for an
            embedding bundle.

    Returns:
        The bundle.json contents written.

    Raises:
        ValueError: ``encoder`` has no ``wav2vec2`` model.
        InvalidInputError, FileExistsError, ExportValidationError: See
            :func:`export_audio_encoder`.
    """
    wav2vec2 = getattr(encoder, "wav2vec2", None)
    if wav2vec2 is None:
        raise ValueError(f"{type(encoder).__name__} has no wav2vec2 model (a SpeechEncoder has)")
    if hasattr(wav2vec2, "set_attn_implementation"):
        wav2vec2.set_attn_implementation("eager")
    encoder.eval()
    graph: AudioEmbeddingModel
    probabilities: Reference | None = None
    if classifier is None:
        graph = AudioEmbeddingModel(wav2vec2, normalize=True)
    else:
        graph = AudioClassifierModel(wav2vec2, classifier.weight, classifier.bias, normalize=True)
        head = classifier.head.eval()

        def probabilities(clip: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                logits = head(encoder(torch.from_numpy(zero_mean_unit_var(clip))[None]))
                return torch.softmax(logits, dim=1)[0].numpy()

    def reference(clip: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            pooled = encoder(torch.from_numpy(zero_mean_unit_var(clip))[None])
            return F.normalize(pooled, p=2.0, dim=1)[0].numpy()

    return export_audio_encoder(
        graph,
        reference,
        output,
        name=name,
        version=version,
        sample_rate=sample_rate,
        max_seconds=max_seconds,
        validation_audio=validation_audio,
        provenance={"architecture": type(encoder).__name__, **(provenance or {})},
        tolerance=tolerance,
        opset=opset,
        overwrite=overwrite,
        extra_files=extra_files,
        labels=None if classifier is None else classifier.labels,
        probabilities_reference=probabilities,
    )


def is_audio_model_dir(model_dir: str | Path) -> bool:
    """Whether a Hugging Face folder's ``config.json`` names an audio model type we export."""
    path = Path(model_dir) / "config.json"
    try:
        model_type = json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False
    return model_type in AUDIO_MODEL_TYPES


def _feature_extractor_settings(folder: Path) -> tuple[int, bool]:
    """``(sampling_rate, do_normalize)`` of ``preprocessor_config.json`` (16000, True if absent)."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return 16000, True
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read it as JSON: {e}") from e
    rate = data.get("sampling_rate", 16000)
    normalize = data.get("do_normalize", True)
    if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
        raise CheckpointError(f"{path}: sampling_rate must be an integer > 0 Hz, got {rate!r}")
    if not isinstance(normalize, bool):
        raise CheckpointError(f"{path}: do_normalize must be true or false, got {normalize!r}")
    return rate, normalize


def _read_recordings(
    files: Sequence[Path], prep: AudioPreprocessing
) -> tuple[list[np.ndarray], list[int]]:
    """Each file preprocessed as the server would, and its original rate in Hz."""
    import soundfile as sf  # type: ignore[import-untyped]

    clips, rates = [], []
    for f in files:
        try:
            data = f.read_bytes()
        except OSError as e:
            raise InvalidInputError(f"validation recording {f}: {e}") from None
        try:
            clips.append(preprocess_audio(data, prep))
        except InvalidInputError as e:
            raise InvalidInputError(f"validation recording {f}: {e}") from None
        rates.append(int(sf.info(str(f)).samplerate))
    return clips, rates
