"""`inference.GRPCInferenceService`: the KServe v2 / Open Inference Protocol over raw tensors.

Serves the same model registry as :mod:`ssl_serve.server.service`, on the same port, so stock
KServe v2 clients (``tritonclient.grpc``) call ssl-serve unchanged. The model is run on the
tensors as sent: no decoding, tokenisation or padding on the server. See
`proto/ssl_serve/kserve/grpc_service.proto` and docs/contracts.md ("KServe v2").

Reference: KServe Open Inference Protocol (V2), https://kserve.github.io/website/ (predict API v2).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import grpc
import numpy as np

from ssl_serve import __version__
from ssl_serve.bundle import AudioPreprocessing, TensorSpec, TextPreprocessing
from ssl_serve.errors import InvalidInputError, RequestTooLargeError, SslServeError
from ssl_serve.preprocess.audio import clips_from_padded
from ssl_serve.server.batcher import Arrival, DynamicBatcher, TextRows
from ssl_serve.server.metrics import ServerMetrics
from ssl_serve.server.models import InferenceResult, LoadedModel, ModelRegistry
from ssl_serve.server.service import grpc_errors

try:
    from ssl_serve.kserve import grpc_service_pb2 as pb
    from ssl_serve.kserve import grpc_service_pb2_grpc as pb_grpc
except TypeError as e:  # protobuf: "duplicate symbol 'inference.ServerLiveRequest'"
    raise SslServeError(
        "cannot register the KServe v2 protobuf package 'inference': another module "
        "(tritonclient's stubs?) registered it in this process first; run the ssl-serve "
        f"server in a process of its own ({e})"
    ) from e

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVER_NAME = "ssl-serve"
PLATFORM = "onnxruntime_onnx"
# bundle.json dtype -> KServe v2 datatype.
DATATYPES = {"float32": "FP32", "int64": "INT64", "int32": "INT32"}
# KServe v2 datatype -> (little-endian numpy dtype, InferTensorContents field).
_WIRE = {
    "FP32": ("<f4", "fp32_contents"),
    "INT64": ("<i8", "int64_contents"),
    "INT32": ("<i4", "int_contents"),
}
# Requested-output parameter (Triton's binary data extension) that chooses raw or typed output.
BINARY_DATA = "binary_data"


def kserve_shape(spec: TensorSpec) -> list[int]:
    """A bundle tensor's shape in KServe v2 form: named (dynamic) axes become -1."""
    return [d if isinstance(d, int) else -1 for d in spec.shape]


class KServeServicer(pb_grpc.GRPCInferenceServiceServicer):
    """KServe v2 health, metadata and inference over a model registry.

    Inputs are matched to the model's graph inputs by name, in any order; every graph input
    must be sent once. Image models take ``pixel_values`` FP32 ``[B, C, H, W]``; text models take
    ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the model has it), INT64 (or
    INT32, cast to int64) ``[B, L]`` with ``1 <= L <= max_length``, padded by the client. The
    outputs are ``embedding`` FP32 ``[B, D]`` and, for a classifier bundle, ``probabilities``
    FP32 ``[B, K]``; all are returned unless the request names some (one model pass either
    way). Outputs come back in ``raw_output_contents`` when the request sent
    ``raw_input_contents`` (what tritonclient does) and in typed ``contents`` when it sent typed
    contents; a requested output's ``binary_data`` bool parameter overrides.

    Rows run through the dynamic batcher, merged with other requests: a text request's rows
    lose their trailing padding (mask 0) and are padded again with their batch's sub-batch,
    which pooling by the attention mask does not see.

    Args:
        registry: The models served.
        batcher: The dynamic batcher of ``registry``'s models.
        is_ready: Whether the server is ready (every model warmed, not draining).
        max_batch_size: Largest B in one ModelInfer call; more is RESOURCE_EXHAUSTED.
        metrics: Where calls, latencies and inputs are counted; None counts nothing.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        batcher: DynamicBatcher,
        is_ready: Callable[[], bool],
        max_batch_size: int = 4096,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.registry = registry
        self.batcher = batcher
        self.is_ready = is_ready
        self.max_batch_size = max_batch_size
        self.metrics = metrics

    @grpc_errors
    def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.ServicerContext
    ) -> pb.ServerLiveResponse:
        """Always live once the process answers RPCs."""
        return pb.ServerLiveResponse(live=True)

    @grpc_errors
    def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.ServicerContext
    ) -> pb.ServerReadyResponse:
        """Ready once every model is warmed up, until the server starts draining."""
        return pb.ServerReadyResponse(ready=self.is_ready())

    @grpc_errors
    def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.ServicerContext
    ) -> pb.ModelReadyResponse:
        """Whether the model version is warmed up; NOT_FOUND for an unknown model or version."""
        model = self.registry.get(request.name, request.version)
        return pb.ModelReadyResponse(ready=model.ready and self.is_ready())

    @grpc_errors
    def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ServerMetadataResponse:
        """``ssl-serve``, its version, and no protocol extensions."""
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=[])

    @grpc_errors
    def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ModelMetadataResponse:
        """A model's versions (all of them when no version is asked), platform and tensors."""
        model = self.registry.get(request.name, request.version)
        versions = (
            [request.version]
            if request.version
            else [m.entry.version for m in self.registry.versions(model.entry.name)]
        )
        bundle = model.bundle

        def meta(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
            return pb.ModelMetadataResponse.TensorMetadata(
                name=spec.name, datatype=DATATYPES[spec.dtype], shape=kserve_shape(spec)
            )

        return pb.ModelMetadataResponse(
            name=model.entry.name,
            versions=versions,
            platform=PLATFORM,
            inputs=[meta(s) for s in bundle.inputs],
            outputs=[meta(s) for s in bundle.outputs],
        )

    @grpc_errors
    def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.ServicerContext
    ) -> pb.ModelInferResponse:
        """Run the model on the request's tensors; see the class docstring for the rules."""
        t0 = time.perf_counter()
        if not request.model_name:
            raise InvalidInputError("model_name is empty; ModelMetadata describes a model")
        model = self.registry.get(request.model_name, request.model_version)
        available = [o.name for o in model.bundle.outputs]
        wanted = list(dict.fromkeys(r.name for r in request.outputs)) or available
        for name in wanted:
            if name not in available:
                raise InvalidInputError(
                    f"requested output {name!r} is not an output of model "
                    f"{model.entry.name!r}; outputs: {available}"
                )
        with self.batcher.for_model(model).arrival() as arrival:
            tensors = self._decode_inputs(model, request)
            arrays, result = self._run(model, tensors, wanted, arrival, context)
        if self.metrics is not None:
            self.metrics.observe_inference(
                "ModelInfer",
                model.entry.name,
                queue_s=result.queue_s,
                inference_s=result.inference_s,
                inputs=len(result.embeddings),
            )
        raw = len(request.raw_input_contents) > 0
        for requested in request.outputs:
            if BINARY_DATA in requested.parameters:
                raw = requested.parameters[BINARY_DATA].bool_param
        response = pb.ModelInferResponse(
            model_name=model.entry.name, model_version=model.entry.version, id=request.id
        )
        for name in wanted:
            values = np.ascontiguousarray(arrays[name], dtype="<f4")
            tensor = pb.ModelInferResponse.InferOutputTensor(
                name=name, datatype="FP32", shape=list(values.shape)
            )
            if raw:
                response.raw_output_contents.append(values.tobytes())
            else:
                tensor.contents.fp32_contents.extend(values.ravel().tolist())
            response.outputs.append(tensor)
        for key, seconds in (
            ("queue_ms", result.queue_s),
            ("inference_ms", result.inference_s),
            ("total_ms", time.perf_counter() - t0),
        ):
            response.parameters[key].double_param = 1000 * seconds
        return response

    def _decode_inputs(
        self, model: LoadedModel, request: pb.ModelInferRequest
    ) -> dict[str, np.ndarray]:
        """The request's tensors by name, checked against the model's graph inputs."""
        specs = {s.name: s for s in model.bundle.inputs}
        name = model.entry.name
        if not request.inputs:
            raise InvalidInputError(f"request has no inputs; model {name!r} takes {list(specs)}")
        raw = request.raw_input_contents
        if raw and len(raw) != len(request.inputs):
            raise InvalidInputError(
                f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
                "send one per input, in the order of inputs"
            )
        tensors: dict[str, np.ndarray] = {}
        for i, item in enumerate(request.inputs):
            spec = specs.get(item.name)
            if spec is None:
                raise InvalidInputError(
                    f"input {item.name!r} is not an input of model {name!r}; inputs: {list(specs)}"
                )
            if item.name in tensors:
                raise InvalidInputError(f"input {item.name!r} is sent twice")
            if raw and item.HasField("contents"):
                raise InvalidInputError(
                    f"input {item.name!r} has typed contents although the request uses "
                    "raw_input_contents; use one or the other for all inputs"
                )
            tensors[item.name] = _decode_tensor(
                spec, item, raw[i] if raw else None, model_name=name
            )
        missing = [n for n in specs if n not in tensors]
        if missing:
            raise InvalidInputError(
                f"model {name!r} needs inputs {list(specs)}; missing: {missing}"
            )
        shapes = {n: t.shape for n, t in tensors.items()}
        if len(set(shapes.values())) > 1:
            raise InvalidInputError(f"inputs must have one shape [B, L]; got {shapes}")
        batch = next(iter(shapes.values()))[0]
        if batch > self.max_batch_size:
            raise RequestTooLargeError(
                f"batch of {batch} is over this server's limit of {self.max_batch_size} per "
                "request (split it)"
            )
        return tensors

    def _run(
        self,
        model: LoadedModel,
        tensors: dict[str, np.ndarray],
        outputs: list[str],
        arrival: Arrival,
        context: grpc.ServicerContext,
    ) -> tuple[dict[str, np.ndarray], InferenceResult]:
        """The requested outputs by name (one model pass, batched) and the timing."""
        prep = model.bundle.preprocessing
        if isinstance(prep, AudioPreprocessing):
            # Cut at each row's real length (checked), then batch as Embed does.
            clips = clips_from_padded(tensors["input_values"], tensors["attention_mask"], prep)
            return arrival.run_audio(clips, outputs, method="ModelInfer", call=context)
        if not isinstance(prep, TextPreprocessing):
            batch = tensors[model.bundle.input.name]
            return arrival.run_images(batch, outputs, method="ModelInfer", call=context)
        ids, mask = tensors["input_ids"], tensors["attention_mask"]
        _check_text(model, ids, mask, prep)
        rows = TextRows.from_padded(ids, mask, tensors.get("token_type_ids"))
        output = model.bundle.output.name
        result = arrival.run_text(rows, output, method="ModelInfer", call=context)
        return {output: result.embeddings}, result


def _decode_tensor(
    spec: TensorSpec,
    item: pb.ModelInferRequest.InferInputTensor,
    raw: bytes | None,
    *,
    model_name: str,
) -> np.ndarray:
    """One input tensor as numpy, its datatype, shape and size checked against ``spec``."""
    expected = DATATYPES[spec.dtype]
    # Token ids may come as INT32 (the ssl_serve.v1 API takes both too); they are cast to int64.
    accepted = [expected, "INT32"] if spec.dtype == "int64" else [expected]
    where = f"input {item.name!r} of model {model_name!r}"
    if item.datatype not in accepted:
        raise InvalidInputError(
            f"{where} has datatype {item.datatype!r}; it takes {' or '.join(accepted)}"
        )
    shape = [int(d) for d in item.shape]
    if not _shape_fits(shape, spec.shape):
        raise InvalidInputError(
            f"{where} has shape {shape}; it takes {kserve_shape(spec)} (-1: any size >= 1)"
        )
    dtype, field = _WIRE[item.datatype]
    count = int(np.prod(shape))
    if raw is not None:
        size = count * np.dtype(dtype).itemsize
        if len(raw) != size:
            raise InvalidInputError(
                f"{where}: raw_input_contents holds {len(raw)} bytes; shape {shape} "
                f"{item.datatype} needs {size}"
            )
        array = np.frombuffer(raw, dtype=dtype)
    else:
        values: Sequence[float | int] = getattr(item.contents, field)
        if len(values) != count:
            raise InvalidInputError(
                f"{where}: contents.{field} holds {len(values)} values; shape {shape} needs {count}"
            )
        array = np.asarray(values, dtype=dtype)
    native = np.float32 if spec.dtype == "float32" else np.int64
    out = array.reshape(shape).astype(native)
    if native is np.float32 and not np.isfinite(out).all():
        raise InvalidInputError(f"{where} holds NaN or infinite values")
    return out


def _shape_fits(shape: Sequence[int], spec: Sequence[int | str]) -> bool:
    """Same rank; fixed axes equal; dynamic (named) axes >= 1."""
    if len(shape) != len(spec):
        return False
    return all(s == d if isinstance(d, int) else s >= 1 for s, d in zip(shape, spec, strict=True))


def _check_text(
    model: LoadedModel, ids: np.ndarray, mask: np.ndarray, prep: TextPreprocessing
) -> None:
    """Token ids in the vocabulary, a 0/1 mask with a real token per row, L <= max_length."""
    name = model.entry.name
    if ids.shape[1] > prep.max_length:
        raise InvalidInputError(
            f"sequence length {ids.shape[1]} is over model {name!r}'s max_length of "
            f"{prep.max_length} tokens"
        )
    tokenizer = model.tokenizer
    if tokenizer is not None:
        bad = (ids < 0) | (ids >= tokenizer.vocab_size)
        if bad.any():
            row, col = (int(x[0]) for x in np.nonzero(bad))
            raise InvalidInputError(
                f"input_ids[{row}, {col}] = {int(ids[row, col])} is outside the vocabulary "
                f"[0, {tokenizer.vocab_size})"
            )
    if not np.isin(mask, (0, 1)).all():
        raise InvalidInputError("attention_mask must hold only 0 (padding) and 1 (token)")
    empty = np.flatnonzero(mask.sum(axis=1) == 0)
    if empty.size:
        raise InvalidInputError(f"attention_mask row {int(empty[0])} has no real token (all zeros)")


def add_to_server(servicer: KServeServicer, server: grpc.Server) -> None:
    """Register ``servicer`` as ``inference.GRPCInferenceService`` on ``server``."""
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
