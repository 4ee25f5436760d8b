"""`ssl_serve.v1.EmbeddingService`: Embed, ListModels and GetModel over a model registry."""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import grpc
import numpy as np

from ssl_serve.bundle import (
    PROBABILITIES_OUTPUT,
    AudioPreprocessing,
    ImagePreprocessing,
    TextPreprocessing,
)
from ssl_serve.errors import (
    InvalidInputError,
    ModelNotReadyError,
    NotAClassifierError,
    RequestTooLargeError,
    SslServeError,
    UnsupportedModalityError,
    grpc_status_code,
)
from ssl_serve.preprocess import (
    DEFAULT_MAX_PIXELS,
    TokenizedTexts,
    decode_tensor,
    decode_token_ids,
    preprocess_audio_inputs,
    preprocess_image,
)
from ssl_serve.server.batcher import DynamicBatcher, TextRows
from ssl_serve.server.metrics import ServerMetrics
from ssl_serve.server.models import InferenceResult, LoadedModel, ModelRegistry
from ssl_serve.v1 import embedding_pb2, embedding_pb2_grpc

log = logging.getLogger(__name__)

# The modality each `Input.kind` carries; "tensor" inputs bypass preprocessing and fit any model.
_INPUT_MODALITY = {"text": "text", "image": "image", "audio": "audio", "raw_audio": "audio"}
_Response = TypeVar("_Response")
# Labels a Classify response lists per input when the request leaves top_k at 0.
DEFAULT_TOP_K = 5
# Longest text input, in characters (the server's --max-text-chars default).
DEFAULT_MAX_TEXT_CHARS = 100_000


def log_request(
    method: str, model: str, code: grpc.StatusCode, seconds: float, error: str = ""
) -> None:
    """Log one answered request with structured fields ``model``, ``method``, ``code``, ``ms``.

    Successful requests log at DEBUG (an access log: ``--log-level DEBUG``), failed ones at
    INFO with the error message; ``--log-format json`` writes the fields as JSON keys.

    Args:
        method: RPC name, e.g. ``"Embed"``.
        model: The requested model name ("" for calls without one).
        code: The status the request was answered with.
        seconds: Handler time, in seconds.
        error: The status message of a failed request.
    """
    ms = round(1000 * seconds, 3)
    level = logging.DEBUG if code == grpc.StatusCode.OK else logging.INFO
    if not log.isEnabledFor(level):
        return
    fields = {"model": model, "method": method, "code": code.name, "ms": ms}
    suffix = f": {error}" if error else ""
    log.log(
        level,
        "%s %s -> %s in %.1f ms%s",
        method,
        model or "-",
        code.name,
        ms,
        suffix,
        extra=fields,
    )


def grpc_errors(
    method: Callable[[Any, Any, grpc.ServicerContext], _Response],
) -> Callable[[Any, Any, grpc.ServicerContext], _Response]:
    """Turn ssl-serve errors into gRPC statuses (errors.grpc_status_code) and log the others.

    When the servicer has a ``metrics`` attribute (a :class:`ServerMetrics`), every call is
    counted there under the method's name, the request's ``model_name`` and the status code.
    """

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> _Response:
        t0 = time.perf_counter()
        code = grpc.StatusCode.OK
        error = ""
        try:
            return method(self, request, context)
        except SslServeError as e:
            code = grpc_status_code(e)
            error = str(e)
            context.abort(code, error)
        except Exception as e:
            code = grpc.StatusCode.INTERNAL
            error = f"internal error: {type(e).__name__}: {e}"
            log.exception("%s failed", method.__name__)
            context.abort(code, error)
        finally:
            seconds = time.perf_counter() - t0
            model = getattr(request, "model_name", "") or getattr(request, "name", "")
            log_request(method.__name__, model, code, seconds, error)
            metrics: ServerMetrics | None = getattr(self, "metrics", None)
            if metrics is not None:
                model = getattr(request, "model_name", "")
                metrics.observe_request(method.__name__, model, code, seconds)
        raise AssertionError("context.abort returned")  # abort always raises

    return wrapper


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServiceServicer):
    """The task-level embedding API (proto/ssl_serve/v1/embedding.proto).

    Inputs are decoded or tokenised on the RPC's thread, then run by the model's dynamic
    batcher, merged with other clients' requests.

    Args:
        registry: The models served.
        batcher: The dynamic batcher of ``registry``'s models (started by the server).
        max_inputs_per_request: Largest number of inputs in one Embed call; more is
            RESOURCE_EXHAUSTED (split the request).
        max_image_pixels: Largest width x height of one image, in pixels; more is
            INVALID_ARGUMENT.
        max_text_chars: Longest text input, in characters (code points); longer is
            INVALID_ARGUMENT.
        metrics: Where requests, latencies, inputs and tokens are counted; None counts
            nothing.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        batcher: DynamicBatcher,
        max_inputs_per_request: int = 4096,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
        max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.registry = registry
        self.batcher = batcher
        self.max_inputs_per_request = max_inputs_per_request
        self.max_image_pixels = max_image_pixels
        self.max_text_chars = max_text_chars
        self.metrics = metrics

    @grpc_errors
    def Embed(
        self, request: embedding_pb2.EmbedRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbedResponse:
        """Embed every input of the request with one model; see the proto for the fields."""
        return self._embed(request, request.request_id or uuid.uuid4().hex, "Embed", context)

    def EmbedStream(
        self,
        request_iterator: Iterable[embedding_pb2.EmbedRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[embedding_pb2.EmbedResponse]:
        """Answer a stream of EmbedRequests in order, one EmbedResponse each.

        A request that fails is answered with a response whose ``error`` holds the status code
        and message unary Embed would have returned (``request_id``, ``model_name`` and
        ``model_version`` echoed, no embeddings), and the stream goes on. Each request is
        counted in the metrics under method ``EmbedStream``.
        """
        for request in request_iterator:
            t0 = time.perf_counter()
            request_id = request.request_id or uuid.uuid4().hex
            code = grpc.StatusCode.OK
            message = ""
            try:
                response = self._embed(request, request_id, "EmbedStream", context)
            except Exception as e:
                if isinstance(e, SslServeError):
                    code = grpc_status_code(e)
                    message = str(e)
                else:
                    code = grpc.StatusCode.INTERNAL
                    message = f"internal error: {type(e).__name__}: {e}"
                    log.exception("EmbedStream request %s failed", request_id)
                response = embedding_pb2.EmbedResponse(
                    model_name=request.model_name,
                    model_version=request.model_version,
                    request_id=request_id,
                    error=embedding_pb2.Error(code=code.value[0], message=message),
                    timing=embedding_pb2.Timing(total_ms=1000 * (time.perf_counter() - t0)),
                )
            seconds = time.perf_counter() - t0
            error = f"request {request_id}: {message}" if message else ""
            log_request("EmbedStream", request.model_name, code, seconds, error)
            if self.metrics is not None:
                self.metrics.observe_request("EmbedStream", request.model_name, code, seconds)
            yield response

    def _embed(
        self,
        request: embedding_pb2.EmbedRequest,
        request_id: str,
        method: str,
        context: grpc.ServicerContext,
    ) -> embedding_pb2.EmbedResponse:
        """The EmbedResponse of one request (Embed and EmbedStream); raises SslServeError."""
        t0 = time.perf_counter()
        if not request.model_name:
            raise InvalidInputError("model_name is empty; ListModels names the models served")
        model = self.registry.get(request.model_name, request.model_version)
        kinds = self._check_inputs(model, request)
        truncated: list[bool] = []
        tokens = 0
        output = model.bundle.output.name
        prep = model.bundle.preprocessing
        with self.batcher.for_model(model).arrival() as arrival:
            if isinstance(prep, AudioPreprocessing):
                clips = preprocess_audio_inputs(request.inputs, prep)
                t1 = time.perf_counter()
                _, result = arrival.run_audio(clips, [output], method=method, call=context)
            elif isinstance(prep, TextPreprocessing):
                tokenized = self._tokenize(model, request, kinds)
                t1 = time.perf_counter()
                rows = TextRows(tokenized.ids, tokenized.type_ids)
                result = arrival.run_text(rows, output, method=method, call=context)
                truncated = tokenized.truncated.tolist()
                tokens = tokenized.num_tokens
            else:
                batch = self._preprocess(model, request, kinds)
                t1 = time.perf_counter()
                _, result = arrival.run_images(batch, [output], method=method, call=context)
        embeddings = result.embeddings
        self._observe(method, model, result, tokens)
        total_s = time.perf_counter() - t0
        return embedding_pb2.EmbedResponse(
            model_name=model.entry.name,
            model_version=model.entry.version,
            shape=list(embeddings.shape),
            embeddings=embeddings.astype("<f4", copy=False).tobytes(),
            request_id=request_id,
            usage=embedding_pb2.Usage(inputs=len(embeddings), tokens=tokens),
            truncated=truncated,
            timing=embedding_pb2.Timing(
                queue_ms=1000 * result.queue_s,
                preprocess_ms=1000 * (t1 - t0),
                inference_ms=1000 * result.inference_s,
                total_ms=1000 * total_s,
            ),
        )

    def _observe(
        self, method: str, model: LoadedModel, result: InferenceResult, tokens: int = 0
    ) -> None:
        if self.metrics is not None:
            self.metrics.observe_inference(
                method,
                model.entry.name,
                queue_s=result.queue_s,
                inference_s=result.inference_s,
                inputs=len(result.embeddings),
                tokens=tokens,
            )

    @grpc_errors
    def Classify(
        self, request: embedding_pb2.ClassifyRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.ClassifyResponse:
        """Class probabilities and top-k labels of every input, with a classifier model.

        Inputs are checked and preprocessed as for Embed (images, texts or token ids, or audio:
        ``audio`` files, ``raw_audio`` samples or float32 ``tensor`` waveforms, resampled to
        the bundle's rate) and run by the model's dynamic batcher; the model's
        ``probabilities`` output (softmax inside the graph) is returned whole, as packed
        float32 ``(N, K)``, and its ``top_k`` largest entries per input as labels (ties: lower
        class index first).

        Raises:
            InvalidInputError: No model name, a negative ``top_k``, or a bad input.
            NotAClassifierError: The model's bundle has no labels (FAILED_PRECONDITION).
        """
        t0 = time.perf_counter()
        request_id = request.request_id or uuid.uuid4().hex
        if not request.model_name:
            raise InvalidInputError("model_name is empty; ListModels names the models served")
        if request.top_k < 0:
            raise InvalidInputError(
                f"top_k must be >= 0 (0 means {DEFAULT_TOP_K}), got {request.top_k}"
            )
        model = self.registry.get(request.model_name, request.model_version)
        labels = model.bundle.labels
        if labels is None:
            raise NotAClassifierError(
                f"model {model.entry.name!r} version {model.entry.version!r} is an embedding "
                "model without class labels; Classify needs a classifier bundle (ssl-serve "
                "export of an ssl-train finetune checkpoint); use Embed for this model"
            )
        kinds = self._check_inputs(model, request)
        tokens = 0
        prep = model.bundle.preprocessing
        with self.batcher.for_model(model).arrival() as arrival:
            if isinstance(prep, AudioPreprocessing):
                clips = preprocess_audio_inputs(request.inputs, prep)
                t1 = time.perf_counter()
                _, result = arrival.run_audio(
                    clips, [PROBABILITIES_OUTPUT], method="Classify", call=context
                )
            elif isinstance(prep, TextPreprocessing):
                tokenized = self._tokenize(model, request, kinds)
                t1 = time.perf_counter()
                rows = TextRows(tokenized.ids, tokenized.type_ids)
                result = arrival.run_text(
                    rows, PROBABILITIES_OUTPUT, method="Classify", call=context
                )
                tokens = tokenized.num_tokens
            else:
                batch = self._preprocess(model, request, kinds)
                t1 = time.perf_counter()
                _, result = arrival.run_images(
                    batch, [PROBABILITIES_OUTPUT], method="Classify", call=context
                )
        self._observe("Classify", model, result, tokens)
        probabilities = result.embeddings
        k = min(request.top_k or DEFAULT_TOP_K, len(labels))
        # A stable sort on -p keeps the lower index first among equal probabilities.
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        classifications = [
            embedding_pb2.Classification(
                top=[
                    embedding_pb2.LabelProbability(
                        label=labels[j], index=int(j), probability=float(row[j])
                    )
                    for j in top
                ]
            )
            for row, top in zip(probabilities, order, strict=True)
        ]
        return embedding_pb2.ClassifyResponse(
            model_name=model.entry.name,
            model_version=model.entry.version,
            labels=list(labels),
            shape=list(probabilities.shape),
            probabilities=probabilities.astype("<f4", copy=False).tobytes(),
            classifications=classifications,
            request_id=request_id,
            usage=embedding_pb2.Usage(inputs=len(probabilities), tokens=tokens),
            timing=embedding_pb2.Timing(
                queue_ms=1000 * result.queue_s,
                preprocess_ms=1000 * (t1 - t0),
                inference_ms=1000 * result.inference_s,
                total_ms=1000 * (time.perf_counter() - t0),
            ),
        )

    @grpc_errors
    def ListModels(
        self, request: embedding_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.ListModelsResponse:
        """Every model version the server holds, by name, then version."""
        return embedding_pb2.ListModelsResponse(
            models=[_metadata(m) for m in self.registry.models()]
        )

    @grpc_errors
    def GetModel(
        self, request: embedding_pb2.GetModelRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.ModelMetadata:
        """One model version ("" = highest); NOT_FOUND when there is none."""
        return _metadata(self.registry.get(request.model_name, request.model_version))

    def _check_inputs(
        self,
        model: LoadedModel,
        request: embedding_pb2.EmbedRequest | embedding_pb2.ClassifyRequest,
    ) -> list[str]:
        """Each input's kind, after checking the count and that every modality fits the model."""
        n = len(request.inputs)
        if n == 0:
            raise InvalidInputError("request has no inputs")
        if n > self.max_inputs_per_request:
            raise RequestTooLargeError(
                f"request has {n} inputs; this server takes at most "
                f"{self.max_inputs_per_request} per request (split it)"
            )
        bundle = model.bundle
        # Check every input's kind before decoding any, so a wrong modality fails fast.
        kinds: list[str] = []
        first: dict[str, int] = {}  # modality -> index of its first input
        for i, item in enumerate(request.inputs):
            kind = item.WhichOneof("kind")
            if kind is None:
                raise InvalidInputError(
                    "no input set; set one of text, image, audio, raw_audio, tensor", index=i
                )
            kinds.append(kind)
            if kind != "tensor":
                first.setdefault(_INPUT_MODALITY[kind], i)
        if len(first) > 1:
            (a, i), (b, j) = sorted(first.items(), key=lambda kv: kv[1])[:2]
            raise UnsupportedModalityError(
                f"request mixes modalities: {a} (input {i}) and {b} (input {j}); send one "
                f"modality per request (model {model.entry.name} takes {bundle.modality})",
                index=j,
            )
        for i, kind in enumerate(kinds):
            if kind != "tensor" and _INPUT_MODALITY[kind] != bundle.modality:
                raise UnsupportedModalityError(
                    f"modality {_INPUT_MODALITY[kind]} not supported by model "
                    f"{model.entry.name} (modality {bundle.modality})",
                    index=i,
                )
        return kinds

    def _tokenize(
        self,
        model: LoadedModel,
        request: embedding_pb2.EmbedRequest | embedding_pb2.ClassifyRequest,
        kinds: list[str],
    ) -> TokenizedTexts:
        """Text inputs tokenised by the bundle's tokenizer; token-id tensors decoded as int64."""
        tokenizer = model.tokenizer
        if tokenizer is None:
            raise ModelNotReadyError(
                f"model {model.entry.name!r} version {model.entry.version!r} is still loading"
            )
        text_at = [i for i, kind in enumerate(kinds) if kind == "text"]
        for i in text_at:
            n = len(request.inputs[i].text)
            if n > self.max_text_chars:
                raise InvalidInputError(
                    f"text is {n} characters; this server takes at most {self.max_text_chars} "
                    f"(--max-text-chars), and the model reads only its first "
                    f"{tokenizer.max_length} tokens: send a shorter text",
                    index=i,
                )
        tokenized = tokenizer.tokenize([request.inputs[i].text for i in text_at])
        if len(text_at) == len(kinds):
            return tokenized
        ids: list[np.ndarray] = [np.empty(0, np.int64)] * len(kinds)
        type_ids = list(ids)
        truncated = np.zeros(len(kinds), dtype=bool)
        for k, i in enumerate(text_at):
            ids[i], type_ids[i] = tokenized.ids[k], tokenized.type_ids[k]
            truncated[i] = tokenized.truncated[k]
        for i, kind in enumerate(kinds):
            if kind == "tensor":
                t = request.inputs[i].tensor
                ids[i] = decode_token_ids(
                    t.dtype,
                    list(t.shape),
                    t.data,
                    max_length=tokenizer.max_length,
                    vocab_size=tokenizer.vocab_size,
                    index=i,
                )
                type_ids[i] = np.zeros_like(ids[i])
        return TokenizedTexts(ids, type_ids, truncated)

    def _preprocess(
        self,
        model: LoadedModel,
        request: embedding_pb2.EmbedRequest | embedding_pb2.ClassifyRequest,
        kinds: list[str],
    ) -> np.ndarray:
        """The image model's ``(N, C, H, W) float32`` batch from image or tensor inputs."""
        n = len(kinds)
        spec = model.bundle.preprocessing
        assert isinstance(spec, ImagePreprocessing)
        item_shape = (spec.channels, *spec.image_size)
        batch = np.empty((n, *item_shape), dtype=np.float32)
        for i, (item, kind) in enumerate(zip(request.inputs, kinds, strict=True)):
            if kind == "image":
                batch[i] = preprocess_image(
                    item.image, spec, index=i, max_pixels=self.max_image_pixels
                )
            else:
                t = item.tensor
                batch[i] = decode_tensor(
                    t.dtype, list(t.shape), t.data, expected_shape=item_shape, index=i
                )
        return batch


def _metadata(model: LoadedModel) -> embedding_pb2.ModelMetadata:
    return embedding_pb2.ModelMetadata(
        name=model.entry.name,
        version=model.entry.version,
        modality=model.bundle.modality,
        embedding_dim=model.bundle.embedding_dim,
        ready=model.ready,
        bundle_json=model.bundle_json,
        labels=list(model.bundle.labels or ()),
        execution_providers=model.execution_providers,
    )
