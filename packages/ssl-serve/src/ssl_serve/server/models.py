"""The models a server holds: one onnxruntime session per repository entry, loaded and warmed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import onnxruntime as ort

from ssl_serve.bundle import BUNDLE_FILE, AudioPreprocessing, Bundle, TextPreprocessing
from ssl_serve.errors import BundleError, ModelNotReadyError
from ssl_serve.preprocess.audio import DEFAULT_MAX_BATCH_SECONDS, audio_batches, warm_up_feeds
from ssl_serve.preprocess.text import TextTokenizer
from ssl_serve.repository import ModelEntry, ModelRepository
from ssl_serve.runtime import (
    DEVICE_PROVIDERS,
    OnnxEmbedder,
    OnnxTextEmbedder,
    create_session,
    default_intra_op_threads,
)

T = TypeVar("T")
E = TypeVar("E", OnnxEmbedder, OnnxTextEmbedder, ort.InferenceSession)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceResult:
    """Embeddings of one batch and where the time went.

    Attributes:
        embeddings: ``(N, D) float32``.
        queue_s: Seconds spent waiting for the model: in the dynamic batcher's queue, and for
            the batch (or direct call) before it to finish.
        inference_s: Seconds in onnxruntime, from the start of the batch the request ran in
            until its rows were computed.
    """

    embeddings: np.ndarray
    queue_s: float
    inference_s: float


def new_model(entry: ModelEntry) -> LoadedModel:
    """A not yet loaded :class:`LoadedModel` of ``entry`` (its bundle.json text read now)."""
    return LoadedModel(entry, (entry.path / BUNDLE_FILE).read_text("utf-8"))


@dataclass(eq=False)  # identity: two loads of one folder are two models (a hot reload's swap)
class LoadedModel:
    """One model version and its session.

    Attributes:
        entry: The repository entry (name, version, folder, bundle).
        bundle_json: The bundle's `bundle.json` text, verbatim.
        embedder: The onnxruntime session of an image bundle; None until loaded.
        text_embedder: The onnxruntime session of a text bundle; None until loaded.
        tokenizer: The text bundle's tokenizer; None until loaded (and for image bundles).
        audio_session: The onnxruntime session of an audio bundle; None until loaded.
    """

    entry: ModelEntry
    bundle_json: str
    embedder: OnnxEmbedder | None = None
    text_embedder: OnnxTextEmbedder | None = None
    tokenizer: TextTokenizer | None = None
    audio_session: ort.InferenceSession | None = None
    # One model call at a time: concurrent runs would split the same CPU cores between them and
    # finish no sooner, while the wait measured here tells an operator the model is the queue.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def bundle(self) -> Bundle:
        """The validated `bundle.json`."""
        return self.entry.bundle

    @property
    def ready(self) -> bool:
        """Whether the model is loaded and warmed."""
        return (
            self.embedder is not None
            or self.text_embedder is not None
            or self.audio_session is not None
        )

    @property
    def execution_providers(self) -> list[str]:
        """The onnxruntime providers the loaded session runs on (empty until loaded)."""
        session = self.audio_session
        for embedder in (self.embedder, self.text_embedder):
            if embedder is not None:
                session = embedder.session
        return [] if session is None else list(session.get_providers())

    def _ready(self, embedder: E | None) -> E:
        """``embedder``, or ModelNotReadyError while the model is still loading."""
        if embedder is None:
            raise ModelNotReadyError(
                f"model {self.entry.name!r} version {self.entry.version!r} is still loading"
            )
        return embedder

    def exclusive(self, fn: Callable[[], T]) -> tuple[T, float, float]:
        """``fn()`` under the model's session lock (one model call at a time).

        Returns:
            ``fn()``'s value, seconds spent waiting for the lock, seconds ``fn`` ran.
        """
        t0 = time.perf_counter()
        with self._lock:
            t1 = time.perf_counter()
            value = fn()
        return value, t1 - t0, time.perf_counter() - t1

    def run(self, batch: np.ndarray, output_name: str | None = None) -> InferenceResult:
        """Embed a preprocessed batch.

        Args:
            batch: ``(N, C, H, W) float32``.
            output_name: Graph output to return instead of the embedding, e.g. a classifier
                bundle's ``"probabilities"`` (``(N, K) float32``).

        Returns:
            The embeddings (or the named output, in ``embeddings``) and the queue/inference
            time.

        Raises:
            ModelNotReadyError: The model is still loading.
            InvalidInputError: The batch does not fit the model's input.
        """
        embedder = self._ready(self.embedder)
        embeddings, queue_s, inference_s = self.exclusive(
            lambda: embedder.embed(batch, output_name)
        )
        return InferenceResult(embeddings, queue_s, inference_s)

    def run_outputs(
        self, batch: np.ndarray, output_names: list[str]
    ) -> tuple[dict[str, np.ndarray], InferenceResult]:
        """Several graph outputs of one pass over a preprocessed image batch (KServe v2).

        Args:
            batch: ``(N, C, H, W) float32``.
            output_names: Graph outputs wanted, e.g. ``["embedding", "probabilities"]``.

        Returns:
            The arrays by name, and the first one's result with the queue/inference time.

        Raises:
            ModelNotReadyError: The model is still loading.
            InvalidInputError: The batch does not fit the model's input.
        """
        embedder = self._ready(self.embedder)
        arrays, queue_s, inference_s = self.exclusive(
            lambda: embedder.run_outputs(batch, output_names)
        )
        result = InferenceResult(arrays[0], queue_s, inference_s)
        return dict(zip(output_names, arrays, strict=True)), result

    def audio_outputs(
        self,
        clips: Sequence[np.ndarray],
        output_names: Sequence[str],
        *,
        max_batch_size: int,
        max_batch_seconds: float = DEFAULT_MAX_BATCH_SECONDS,
    ) -> list[np.ndarray]:
        """Embed waveforms with an audio model, in length-sorted padded sub-batches.

        Does not take the model's lock: the caller holds it (:meth:`exclusive`), as the
        dynamic batcher does.

        Args:
            clips: N arrays ``(T_i,) float32`` at the bundle's rate (preprocessed and checked
                by :mod:`ssl_serve.preprocess.audio`).
            output_names: Graph outputs wanted, e.g. ``["embedding"]``.
            max_batch_size: Most clips per ``session.run``.
            max_batch_seconds: Most padded audio per ``session.run``, in seconds (one clip
                always runs).

        Returns:
            One ``(N, ...) float32`` array per name of ``output_names``, rows in input order.

        Raises:
            ModelNotReadyError: The model is still loading.
        """
        session = self._ready(self.audio_session)
        prep = self.bundle.preprocessing
        assert isinstance(prep, AudioPreprocessing)
        out: list[np.ndarray] = []
        for idx, feeds in audio_batches(
            clips,
            max_batch_size=max_batch_size,
            max_batch_samples=max(1, int(max_batch_seconds * prep.sample_rate)),
        ):
            arrays = session.run(list(output_names), feeds)
            if not out:
                out = [np.empty((len(clips), *a.shape[1:]), np.float32) for a in arrays]
            for k, a in enumerate(arrays):
                out[k][idx] = a
        return out

    def run_tokens(
        self, sequences: list[np.ndarray], type_ids: list[np.ndarray] | None = None
    ) -> InferenceResult:
        """Embed token sequences with a text model (length-sorted padded sub-batches).

        Args:
            sequences: N arrays ``(L_i,) int64`` of token ids, special tokens included.
            type_ids: N arrays ``(L_i,) int64`` of token type ids, or None for zeros.

        Returns:
            The embeddings, in input order, and the queue/inference time.

        Raises:
            ModelNotReadyError: The model is still loading.
        """
        embedder = self._ready(self.text_embedder)
        embeddings, queue_s, inference_s = self.exclusive(
            lambda: embedder.embed(sequences, type_ids)
        )
        return InferenceResult(embeddings, queue_s, inference_s)

    def run_padded(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray | None = None,
    ) -> InferenceResult:
        """Embed an already padded batch with a text model, as given (KServe v2 raw tensors).

        Rows run in chunks of at most the embedder's ``max_batch_size``; the padding is the
        caller's (pooling uses the attention mask, so it does not change the embeddings).

        Args:
            input_ids: ``(B, L) int64`` token ids.
            attention_mask: ``(B, L) int64``, 1 for real tokens, 0 for padding.
            token_type_ids: ``(B, L) int64``; zeros when None.

        Returns:
            ``(B, D) float32`` embeddings and the queue/inference time.

        Raises:
            ModelNotReadyError: The model is still loading.
        """
        embedder = self._ready(self.text_embedder)
        step = embedder.max_batch_size

        def run() -> np.ndarray:
            chunks = [
                embedder.embed_padded(
                    input_ids[i : i + step],
                    attention_mask[i : i + step],
                    None if token_type_ids is None else token_type_ids[i : i + step],
                )
                for i in range(0, len(input_ids), step)
            ]
            return chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=0)

        embeddings, queue_s, inference_s = self.exclusive(run)
        return InferenceResult(embeddings, queue_s, inference_s)


class ModelRegistry:
    """Every version of every model of a repository, with their sessions.

    The registry holds one snapshot (a :class:`ModelRepository` and its loaded models) and
    replaces it whole (:meth:`swap`), so a reader sees either the old set of versions or the new
    one, never a mix; a request keeps the :class:`LoadedModel` it resolved even when a hot reload
    replaces it meanwhile.

    Args:
        repository: The scanned model repository.
        intra_op_threads: onnxruntime threads per session; None picks the default.
        max_batch_size: Largest batch per ``session.run``; larger requests run in chunks.
        max_batch_tokens: Text models: most padded tokens per ``session.run``.
        providers: onnxruntime execution providers for every session, in order of preference
            (:func:`~ssl_serve.runtime.execution_providers`); each session must run on the
            first, or loading it raises :class:`~ssl_serve.errors.ExecutionProviderError`.
    """

    def __init__(
        self,
        repository: ModelRepository,
        *,
        intra_op_threads: int | None = None,
        max_batch_size: int = 256,
        max_batch_tokens: int = 8192,
        providers: Sequence[str] = DEVICE_PROVIDERS["cpu"],
    ) -> None:
        self.intra_op_threads = intra_op_threads
        self.providers = tuple(providers)
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        models = {(e.name, e.version): new_model(e) for e in repository.entries()}
        self._snapshot: tuple[ModelRepository, dict[tuple[str, str], LoadedModel]] = (
            repository,
            models,
        )

    @property
    def repository(self) -> ModelRepository:
        """The repository snapshot served now."""
        return self._snapshot[0]

    def load_all(self, on_model_ready: Callable[[str], None] | None = None) -> None:
        """Create and warm (one zero-input inference) every session, in name/version order.

        Args:
            on_model_ready: Called with a model name once all its versions are ready.

        Raises:
            BundleError: A model cannot be loaded or its warm-up fails.
        """
        for name in self.repository.names():
            for model in self.versions(name):
                self.load(model)
            if on_model_ready is not None:
                on_model_ready(name)

    def load(self, model: LoadedModel) -> None:
        """Create and warm ``model``'s session(s) (tokenizer too, for text bundles).

        Args:
            model: A model version, of this registry or about to be added by :meth:`swap`.

        Raises:
            BundleError: The model cannot be loaded or its warm-up fails (onnxruntime's own
                errors may also escape for a corrupt `model.onnx`).
        """
        t0 = time.perf_counter()
        bundle = model.bundle
        embedder: OnnxEmbedder | OnnxTextEmbedder
        if isinstance(bundle.preprocessing, AudioPreprocessing):
            self._load_audio(model)
            return
        if isinstance(bundle.preprocessing, TextPreprocessing):
            prep = bundle.preprocessing
            tokenizer = TextTokenizer(model.entry.path / prep.tokenizer, prep.max_length)
            embedder = OnnxTextEmbedder(
                model.entry.model_path,
                input_names=bundle.input_names,
                output_name=bundle.output.name,
                pad_id=prep.pad_id,
                intra_op_threads=self.intra_op_threads,
                max_batch_size=self.max_batch_size,
                max_batch_tokens=self.max_batch_tokens,
                providers=self.providers,
            )
            embedder.warm_up()
            model.tokenizer = tokenizer
            model.text_embedder = embedder
        else:
            embedder = OnnxEmbedder(
                model.entry.model_path,
                input_name=bundle.input.name,
                output_name=bundle.output.name,
                intra_op_threads=self.intra_op_threads,
                max_batch_size=self.max_batch_size,
                providers=self.providers,
            )
            embedder.warm_up()
            model.embedder = embedder
        log.info(
            "loaded %s/%s (%s, D=%d, %s, %d threads) in %.0f ms",
            model.entry.name,
            model.entry.version,
            bundle.modality,
            bundle.embedding_dim,
            model.execution_providers[0],
            embedder.intra_op_threads,
            1000 * (time.perf_counter() - t0),
        )

    def swap(self, models: list[LoadedModel]) -> None:
        """Serve exactly ``models`` from now on (one atomic replacement of the snapshot).

        Args:
            models: Every model version to serve, loaded; unique (name, version) pairs.
        """
        repository = ModelRepository(self.repository.root, [m.entry for m in models])
        self._snapshot = (repository, {(m.entry.name, m.entry.version): m for m in models})

    def _load_audio(self, model: LoadedModel) -> None:
        """Create an audio model's session and warm it on a padded batch of silence."""
        t0 = time.perf_counter()
        prep = model.bundle.preprocessing
        assert isinstance(prep, AudioPreprocessing)
        threads = self.intra_op_threads or default_intra_op_threads()
        session = create_session(model.entry.model_path, threads, self.providers)
        names = sorted(i.name for i in session.get_inputs())
        if names != sorted(model.bundle.input_names):
            raise BundleError(
                model.entry.model_path,
                f"graph inputs are {names}; bundle.json lists {sorted(model.bundle.input_names)}",
            )
        try:
            session.run([model.bundle.output.name], warm_up_feeds(prep))
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise BundleError(model.entry.model_path, f"warm-up inference failed: {e}") from e
        model.audio_session = session
        log.info(
            "loaded %s/%s (audio, %d Hz, D=%d, %s, %d threads) in %.0f ms",
            model.entry.name,
            model.entry.version,
            prep.sample_rate,
            model.bundle.embedding_dim,
            model.execution_providers[0],
            threads,
            1000 * (time.perf_counter() - t0),
        )

    def get(self, name: str, version: str = "") -> LoadedModel:
        """The model ``name`` at ``version`` ("" = highest), loaded or not.

        Raises:
            ModelNotFoundError: No such model or version.
        """
        repository, models = self._snapshot
        entry = repository.resolve(name, version)
        return models[(entry.name, entry.version)]

    def versions(self, name: str) -> list[LoadedModel]:
        """Every version of ``name``, lowest first."""
        return [m for m in self.models() if m.entry.name == name]

    def models(self) -> list[LoadedModel]:
        """Every model version, by name, then version."""
        repository, models = self._snapshot
        return [models[(e.name, e.version)] for e in repository.entries()]
