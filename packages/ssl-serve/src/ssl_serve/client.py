"""Python clients for an ssl-serve server (grpcio and numpy; no torch).

:class:`EmbeddingClient` blocks; :class:`AsyncEmbeddingClient` (``grpc.aio``) has the same
methods as coroutines. Both build their requests and decode their responses with the same
code: each method is a small plan (a generator that yields ``(rpc name, request)`` steps and
receives the responses), run by the client's own driver (:meth:`EmbeddingClient._run`, or its
awaiting twin).

Every failed call raises :class:`~ssl_serve.errors.RemoteError`, which carries the gRPC status
code (``error.code``, a ``grpc.StatusCode``) and the server's message (``error.details``); the
original ``grpc.RpcError`` is its ``__cause__``. A unary call answered UNAVAILABLE (server down
or restarting, model loading, server draining) is retried with exponential backoff and jitter
(:class:`RetryPolicy`, ``retries=3`` by default) within the call's deadline; no other status is
retried. A client speaks TLS when given a CA (or ``tls=True``), mutual TLS with a client
certificate and key, and sends a bearer token on every call when given one.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ssl_serve.errors import InvalidInputError, ModelNotFoundError, RemoteError, SslServeError
from ssl_serve.v1 import embedding_pb2, embedding_pb2_grpc

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_T = TypeVar("_T")
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}
# A plan: yields (EmbeddingService RPC name, request), receives each response, returns a value.
_Plan = Generator[tuple[str, Any], Any, _T]
# Statuses worth another attempt: the server (or the connection to it) is not there right now.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})


@dataclass(frozen=True)
class TextEmbeddings:
    """Embeddings of texts with what the server did to them.

    Attributes:
        embeddings: ``(N, D) float32`` rows in input order.
        truncated: ``(N,) bool``: whether text i was cut to the model's maximum length.
        tokens: Tokens the model read, special tokens included, padding excluded.
    """

    embeddings: np.ndarray
    truncated: np.ndarray
    tokens: int


@dataclass(frozen=True)
class Classifications:
    """Class probabilities of N inputs from a classifier model (the Classify RPC).

    Attributes:
        labels: The model's K class names; ``labels[j]`` names column j.
        probabilities: ``(N, K) float32`` softmax probabilities, rows in input order (each
            sums to 1 up to float32 rounding).
        top_k: Per input, the ``(label, probability)`` pairs of its k most probable classes,
            most probable first (ties: lower class index first).
    """

    labels: tuple[str, ...]
    probabilities: np.ndarray
    top_k: list[list[tuple[str, float]]]


@dataclass(frozen=True)
class ModelInfo:
    """What the server says about one model version (the proto's ModelMetadata).

    Attributes:
        name: Model name.
        version: Model version.
        modality: "image", "text" or "audio".
        embedding_dim: Width D of the embeddings.
        ready: Whether the server has loaded and warmed it.
        bundle: The bundle's `bundle.json`, decoded.
        labels: Class names of a classifier model (Classify works on it); empty otherwise.
        execution_providers: onnxruntime providers its session runs on, preferred first
            (e.g. ``("CPUExecutionProvider",)``); empty until loaded.
    """

    name: str
    version: str
    modality: str
    embedding_dim: int
    ready: bool
    bundle: dict[str, Any]
    labels: tuple[str, ...] = ()
    execution_providers: tuple[str, ...] = ()

    @classmethod
    def from_proto(cls, m: embedding_pb2.ModelMetadata) -> ModelInfo:
        """Convert the proto message (decoding its ``bundle_json``)."""
        bundle = json.loads(m.bundle_json) if m.bundle_json else {}
        return cls(
            m.name,
            m.version,
            m.modality,
            int(m.embedding_dim),
            bool(m.ready),
            bundle,
            tuple(m.labels),
            tuple(m.execution_providers),
        )


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long a client waits before it repeats a call answered UNAVAILABLE.

    Attempt ``k`` (0-based) that fails with a code in :data:`RETRYABLE_CODES` is repeated
    after ``min(max_backoff_s, initial_backoff_s * 2**k)`` seconds times a random factor in
    [0.5, 1) (jitter, so that many clients do not retry in step), at most ``retries`` times,
    and only while the call's deadline leaves time for the wait. Every other status (e.g.
    INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED) is raised at once.

    Attributes:
        retries: Most repeats of one call (0: none).
        initial_backoff_s: Backoff before the first repeat, in seconds.
        max_backoff_s: Largest backoff, in seconds.

    Raises:
        ValueError: ``retries`` < 0 or a backoff <= 0.

    Reference: "Exponential Backoff And Jitter", AWS Architecture Blog (2015); gRPC's
    connection backoff (doc/connection-backoff.md).
    """

    retries: int = 3
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if not (self.initial_backoff_s > 0 and self.max_backoff_s > 0):
            raise ValueError(
                f"initial_backoff_s ({self.initial_backoff_s}) and max_backoff_s "
                f"({self.max_backoff_s}) must be > 0 seconds"
            )

    def delay_s(self, code: grpc.StatusCode, attempt: int, deadline: float) -> float | None:
        """Seconds to wait before repeating a failed attempt; None when not to repeat it.

        Args:
            code: The status the attempt failed with.
            attempt: Its number, 0 for the first.
            deadline: The call's deadline, on the ``time.monotonic()`` clock.
        """
        if code not in RETRYABLE_CODES or attempt >= self.retries:
            return None
        backoff = min(self.max_backoff_s, self.initial_backoff_s * 2**attempt)
        delay = backoff * random.uniform(0.5, 1.0)
        if time.monotonic() + delay >= deadline:
            return None
        return delay

    def channel_options(self) -> list[tuple[str, int]]:
        """gRPC channel options that let a channel reconnect as often as the retries come.

        A channel whose server is down fails calls at once until its next connection attempt,
        which gRPC makes after 1 s, then up to 120 s by default: capped at ``max_backoff_s``, a
        retry soon finds the restarted server.
        """
        return [
            ("grpc.initial_reconnect_backoff_ms", max(1, int(1000 * self.initial_backoff_s))),
            ("grpc.max_reconnect_backoff_ms", max(1, int(1000 * self.max_backoff_s))),
        ]


@dataclass(frozen=True)
class _ChannelSettings:
    """What both clients need to open their channel (checked once, here)."""

    target: str
    options: list[tuple[str, Any]]
    credentials: grpc.ChannelCredentials | None
    metadata: tuple[tuple[str, str], ...] | None


def _channel_settings(
    target: str,
    *,
    timeout_s: float,
    max_message_bytes: int,
    retry: RetryPolicy,
    tls: bool,
    tls_ca: str | Path | bytes | None,
    tls_cert: str | Path | bytes | None,
    tls_key: str | Path | bytes | None,
    tls_server_name: str | None,
    token: str | None,
) -> _ChannelSettings:
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together (mutual TLS): give both or neither")
    if token is not None and (not token or not all("!" <= c <= "~" for c in token)):
        raise ValueError(
            "token must be 1 or more visible ASCII characters without spaces "
            f"(got {len(token)} characters)"
        )
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        *retry.channel_options(),
    ]
    credentials = None
    if tls or any(x is not None for x in (tls_ca, tls_cert, tls_server_name)):
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_pem(tls_ca),
            private_key=_pem(tls_key),
            certificate_chain=_pem(tls_cert),
        )
        if tls_server_name is not None:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
    # Metadata on each call rather than call credentials, which gRPC sends over TLS only:
    # behind a TLS-terminating proxy the hop to the proxy may be plaintext on the same host.
    metadata = None if token is None else (("authorization", f"Bearer {token}"),)
    return _ChannelSettings(target, options, credentials, metadata)


class EmbeddingClient:
    """Calls an ssl-serve server's EmbeddingService and health service.

    Use as a context manager (or call :meth:`close`) to close the channel.

    Args:
        target: Server address, "host:port" (gRPC target syntax, e.g. "dns:///host:port").
        timeout_s: Deadline of each call, in seconds, its retries included.
        max_message_bytes: Largest message sent or received, in bytes; keep it at or below
            the server's ``--max-message-mb``.
        tls: Speak TLS, checking the server's certificate against the system's CAs (implied by
            every other ``tls_`` argument).
        tls_ca: CA certificate(s) that signed the server's certificate, PEM (a path or the
            bytes); None uses the system's CAs.
        tls_cert: Client certificate chain, PEM, for a server that requires client
            certificates (mutual TLS); with ``tls_key``.
        tls_key: The client certificate's private key, PEM (unencrypted).
        tls_server_name: Name to check the server's certificate against instead of the
            target's host, e.g. when connecting by IP address.
        token: Bearer token sent on every call as metadata ``authorization: Bearer <token>``
            (servers started with ``--token``/``--token-file``); the health checks of
            :meth:`wait_until_serving` carry it too, though the server does not ask for it.
        retries: Most repeats of a unary call answered UNAVAILABLE (0: none), with exponential
            backoff and jitter, within ``timeout_s`` (see :class:`RetryPolicy`); streams and
            :meth:`wait_until_serving` are not repeated.
        retry_backoff_s: Backoff before the first repeat, in seconds (doubling each time).
        retry_max_backoff_s: Largest backoff, in seconds; also caps the channel's own
            reconnection backoff, so a restarted server is found soon.

    Raises:
        ValueError: ``timeout_s`` <= 0, ``tls_cert`` without ``tls_key`` (or the reverse), a
            malformed token, ``retries`` < 0 or a backoff <= 0.
        OSError: A TLS file cannot be read.

    Example:
        >>> with EmbeddingClient("127.0.0.1:50051") as client:  # doctest: +SKIP
        ...     emb = client.embed_images("fashion-mnist", [open("a.png", "rb").read()])
        >>> secure = EmbeddingClient(  # doctest: +SKIP
        ...     "embed.example.com:443", tls_ca="ca.pem", token=os.environ["SSL_SERVE_TOKEN"]
        ... )
    """

    def __init__(
        self,
        target: str,
        *,
        timeout_s: float = 30.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        tls: bool = False,
        tls_ca: str | Path | bytes | None = None,
        tls_cert: str | Path | bytes | None = None,
        tls_key: str | Path | bytes | None = None,
        tls_server_name: str | None = None,
        token: str | None = None,
        retries: int = 3,
        retry_backoff_s: float = 0.1,
        retry_max_backoff_s: float = 2.0,
    ) -> None:
        self.retry = RetryPolicy(retries, retry_backoff_s, retry_max_backoff_s)
        settings = _channel_settings(
            target,
            timeout_s=timeout_s,
            max_message_bytes=max_message_bytes,
            retry=self.retry,
            tls=tls,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_server_name=tls_server_name,
            token=token,
        )
        self.target = target
        self.timeout_s = timeout_s
        self.tls = settings.credentials is not None
        self._metadata = settings.metadata
        if settings.credentials is not None:
            self._channel = grpc.secure_channel(
                target, settings.credentials, options=settings.options
            )
        else:
            self._channel = grpc.insecure_channel(target, options=settings.options)
        self._stub = embedding_pb2_grpc.EmbeddingServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def embed(
        self, request: embedding_pb2.EmbedRequest
    ) -> tuple[np.ndarray, embedding_pb2.EmbedResponse]:
        """Send one EmbedRequest as it is.

        Args:
            request: The request (model, inputs, optional request id).

        Returns:
            ``(N, D) float32`` embeddings and the full response (timing, usage, request id).

        Raises:
            RemoteError: The call failed (status code and message inside).
            SslServeError: The response's shape and byte count disagree.
        """
        return self._run(_embed_one(request))

    def embed_stream(
        self,
        requests: Iterable[embedding_pb2.EmbedRequest],
        *,
        timeout_s: float | None = None,
    ) -> Iterator[tuple[np.ndarray, embedding_pb2.EmbedResponse]]:
        """Send EmbedRequests over one EmbedStream call; yield each answer as it arrives.

        ``requests`` is consumed lazily, on a gRPC thread, while answers come back, so it may
        be a generator that produces requests as the caller reads results. The server answers
        in request order.

        Args:
            requests: The requests (model, inputs, optional request id each).
            timeout_s: Deadline of the whole stream, in seconds; None (the default) sets none
                (the client's ``timeout_s`` is per unary call and would cut long streams).

        Yields:
            Per request, in order: ``(N, D) float32`` embeddings and the full response
            (``request_id`` echoed, or the one the server made).

        Raises:
            RemoteError: A request failed (the server answers it with an ``error``; the code is
                the one unary Embed would return and the message starts with
                ``request <request_id>: ``; earlier answers were already yielded and the
                stream is cancelled), or the stream failed (deadline, server gone).
            SslServeError: A response's shape and byte count disagree.
        """
        call = self._stub.EmbedStream(iter(requests), timeout=timeout_s, metadata=self._metadata)
        try:
            for response in call:
                yield _streamed(response)
        except grpc.RpcError as e:
            raise RemoteError(e.code(), e.details() or "") from e
        finally:
            call.cancel()  # no-op once the stream has ended; stops it when the caller quits

    def classify(self, request: embedding_pb2.ClassifyRequest) -> embedding_pb2.ClassifyResponse:
        """Send one ClassifyRequest as it is and return the response.

        Raises:
            RemoteError: The call failed; FAILED_PRECONDITION when the model is not a
                classifier.
        """
        return self._run(_one("Classify", request))

    def classify_images(
        self,
        model: str,
        images: Sequence[bytes],
        *,
        top_k: int = 5,
        version: str = "",
        batch_size: int = 256,
    ) -> Classifications:
        """Classify encoded images with a classifier model, ``batch_size`` per request.

        Args:
            model: Model name (a classifier bundle: exported from a fine-tuned checkpoint).
            images: N >= 1 PNG or JPEG files' bytes; the server converts size and channels.
            top_k: Labels returned per image (>= 1; capped at the number of classes).
            version: Model version; "" selects the highest.
            batch_size: Images per request (>= 1).

        Returns:
            The probabilities ``(N, K) float32`` and the top-k labels per image.

        Raises:
            ValueError: ``top_k``, ``batch_size`` or the number of images is < 1.
            RemoteError: A call failed: FAILED_PRECONDITION for a model without labels,
                INVALID_ARGUMENT for a bad image (the message names its index in its request).
        """
        return self._run(_classify_plan(model, _image_inputs(images), top_k, version, batch_size))

    def classify_texts(
        self,
        model: str,
        texts: Sequence[str],
        *,
        top_k: int = 5,
        version: str = "",
        batch_size: int = 256,
    ) -> Classifications:
        """Classify texts with a text classifier model (tokenised by the server).

        Args:
            model: Model name (a text classifier bundle: an ssl-train text finetune, exported).
            texts: N >= 1 texts; longer ones are truncated to the bundle's max_length.
            top_k: Labels returned per text (>= 1; capped at the number of classes).
            version: Model version; "" selects the highest.
            batch_size: Texts per request (>= 1).

        Returns:
            The probabilities ``(N, K) float32`` and the top-k labels per text.

        Raises:
            ValueError: ``top_k``, ``batch_size`` or the number of texts is < 1.
            RemoteError: A call failed: FAILED_PRECONDITION for a model without labels,
                INVALID_ARGUMENT for an image model.
        """
        return self._run(_classify_plan(model, _text_inputs(texts), top_k, version, batch_size))

    def classify_audio(
        self,
        model: str,
        files: Sequence[bytes],
        *,
        top_k: int = 5,
        version: str = "",
        batch_size: int = 32,
    ) -> Classifications:
        """Classify encoded audio files with an audio classifier model (an ssl-train speech
        finetune, exported), ``batch_size`` per request.

        Args:
            model: Model name (an audio classifier bundle).
            files: N >= 1 WAV or FLAC files' bytes, any rate and channel count; the server
                mixes them down to mono and resamples them to the model's rate.
            top_k: Labels returned per file (>= 1; capped at the number of classes).
            version: Model version; "" selects the highest.
            batch_size: Files per request (>= 1).

        Returns:
            The probabilities ``(N, K) float32`` and the top-k labels per file.

        Raises:
            ValueError: ``top_k``, ``batch_size`` or the number of files is < 1.
            RemoteError: A call failed: FAILED_PRECONDITION for a model without labels,
                INVALID_ARGUMENT for a bad file (undecodable, empty, NaN samples, longer than
                the model's max_seconds; the message names its index in its request).
        """
        return self._run(_classify_plan(model, _audio_inputs(files), top_k, version, batch_size))

    def classify_raw_audio(
        self,
        model: str,
        clips: Sequence[np.ndarray],
        sample_rate_hz: float,
        *,
        top_k: int = 5,
        version: str = "",
        batch_size: int = 32,
    ) -> Classifications:
        """Classify raw mono waveforms with an audio classifier model (resampled by the server).

        Args:
            model: Model name (an audio classifier bundle).
            clips: N >= 1 arrays ``(T_i,)`` of samples in [-1, 1] (sent as little-endian
                float32).
            sample_rate_hz: Their rate in Hz.
            top_k: Labels returned per clip (>= 1; capped at the number of classes).
            version: Model version; "" selects the highest.
            batch_size: Clips per request (>= 1).

        Returns:
            The probabilities ``(N, K) float32`` and the top-k labels per clip.

        Raises:
            ValueError: ``top_k``, ``batch_size`` or the number of clips is < 1.
            RemoteError: A call failed (INVALID_ARGUMENT for a bad clip or rate).
        """
        inputs = _raw_audio_inputs(clips, sample_rate_hz)
        return self._run(_classify_plan(model, inputs, top_k, version, batch_size))

    def classify_tensors(
        self,
        model: str,
        tensors: np.ndarray,
        *,
        top_k: int = 5,
        version: str = "",
        batch_size: int = 256,
    ) -> Classifications:
        """Classify already preprocessed model inputs (fed to the model as they are).

        Args:
            model: Model name (a classifier bundle).
            tensors: ``(N, C, H, W) float32``, preprocessed as the bundle says, N >= 1.
            top_k: Labels returned per input (>= 1).
            version: Model version; "" selects the highest.
            batch_size: Inputs per request (>= 1).

        Returns:
            The probabilities ``(N, K) float32`` and the top-k labels per input.

        Raises:
            ValueError: ``top_k``, ``batch_size`` or N is < 1.
            InvalidInputError: ``tensors`` is not a 4-D array.
            RemoteError: A call failed.
        """
        inputs = _tensor_inputs(tensors)
        return self._run(_classify_plan(model, inputs, top_k, version, batch_size))

    def embed_images(
        self,
        model: str,
        images: Sequence[bytes],
        *,
        version: str = "",
        batch_size: int = 256,
    ) -> np.ndarray:
        """Embed encoded images, ``batch_size`` per request.

        Args:
            model: Model name.
            images: N PNG or JPEG files' bytes; the server converts size and channel count.
            version: Model version; "" selects the highest.
            batch_size: Images per request (>= 1).

        Returns:
            ``(N, D) float32`` embeddings in input order (``(0, D)`` when ``images`` is empty).

        Raises:
            ValueError: ``batch_size`` < 1.
            RemoteError: A call failed; for a bad image the code is INVALID_ARGUMENT and the
                message names the image's index within its request (when the images took
                several requests, the message starts with that request's range of indices).
        """
        return self._run(_embed_plan(model, _image_inputs(images), version, batch_size))

    def embed_audio(
        self,
        model: str,
        files: Sequence[bytes],
        *,
        version: str = "",
        batch_size: int = 32,
    ) -> np.ndarray:
        """Embed encoded audio files with an audio model, ``batch_size`` per request.

        Args:
            model: Model name.
            files: N WAV or FLAC files' bytes, any rate and channel count; the server mixes
                them down to mono and resamples them to the model's rate.
            version: Model version; "" selects the highest.
            batch_size: Files per request (>= 1).

        Returns:
            ``(N, D) float32`` embeddings in input order.

        Raises:
            ValueError: ``batch_size`` < 1.
            RemoteError: A call failed; a bad file (undecodable, empty, NaN samples, longer than
                the model's max_seconds) is INVALID_ARGUMENT naming its index.
        """
        return self._run(_embed_plan(model, _audio_inputs(files), version, batch_size))

    def embed_raw_audio(
        self,
        model: str,
        clips: Sequence[np.ndarray],
        sample_rate_hz: float,
        *,
        version: str = "",
        batch_size: int = 32,
    ) -> np.ndarray:
        """Embed raw mono waveforms with an audio model (resampled by the server).

        Args:
            model: Model name.
            clips: N arrays ``(T_i,)`` of samples in [-1, 1] (sent as little-endian float32).
            sample_rate_hz: Their rate in Hz.
            version: Model version; "" selects the highest.
            batch_size: Clips per request (>= 1).

        Returns:
            ``(N, D) float32`` embeddings in input order.

        Raises:
            ValueError: ``batch_size`` < 1.
            RemoteError: A call failed (INVALID_ARGUMENT for a bad clip or rate).
        """
        inputs = _raw_audio_inputs(clips, sample_rate_hz)
        return self._run(_embed_plan(model, inputs, version, batch_size))

    def embed_tensors(
        self, model: str, tensors: np.ndarray, *, version: str = "", batch_size: int = 256
    ) -> np.ndarray:
        """Embed already preprocessed model inputs (fed to the model as they are).

        Args:
            model: Model name.
            tensors: ``(N, C, H, W) float32``, preprocessed as the bundle says.
            version: Model version; "" selects the highest.
            batch_size: Inputs per request (>= 1).

        Returns:
            ``(N, D) float32`` embeddings in input order.

        Raises:
            ValueError: ``batch_size`` < 1.
            InvalidInputError: ``tensors`` is not a 4-D array.
            RemoteError: A call failed.
        """
        return self._run(_embed_plan(model, _tensor_inputs(tensors), version, batch_size))

    def embed_texts(
        self, model: str, texts: Sequence[str], *, version: str = "", batch_size: int = 256
    ) -> np.ndarray:
        """Embed texts with a text model; the server tokenises and truncates them.

        Args:
            model: Model name (a text bundle).
            texts: N strings.
            version: Model version; "" selects the highest.
            batch_size: Texts per request (>= 1); the server sorts each request by length.

        Returns:
            ``(N, D) float32`` embeddings in input order (see :meth:`embed_texts_detailed`
            for truncation flags and token counts).

        Raises:
            ValueError: ``batch_size`` < 1.
            RemoteError: A call failed (INVALID_ARGUMENT for an image model).
        """
        return self.embed_texts_detailed(
            model, texts, version=version, batch_size=batch_size
        ).embeddings

    def embed_texts_detailed(
        self, model: str, texts: Sequence[str], *, version: str = "", batch_size: int = 256
    ) -> TextEmbeddings:
        """:meth:`embed_texts`, with per-text truncation flags and the token count."""
        return self._run(_text_plan(model, _text_inputs(texts), version, batch_size))

    def embed_token_ids(
        self,
        model: str,
        sequences: Sequence[np.ndarray],
        *,
        version: str = "",
        batch_size: int = 256,
    ) -> np.ndarray:
        """Embed already tokenised texts with a text model (int32 or int64 ids, no padding).

        Args:
            model: Model name (a text bundle).
            sequences: N arrays ``(L_i,) int32`` or ``int64`` of token ids, special tokens
                included, 1 <= L_i <= the bundle's ``max_length``.
            version: Model version; "" selects the highest.
            batch_size: Sequences per request (>= 1).

        Returns:
            ``(N, D) float32`` embeddings in input order.

        Raises:
            ValueError: ``batch_size`` < 1.
            InvalidInputError: A sequence is not 1-D int32/int64.
            RemoteError: A call failed (INVALID_ARGUMENT for an id outside the vocabulary or a
                sequence longer than the model's maximum length).
        """
        inputs = _token_inputs(sequences)
        return self._run(_text_plan(model, inputs, version, batch_size)).embeddings

    def list_models(self) -> list[ModelInfo]:
        """Every model version the server holds."""
        return self._run(_list_models_plan())

    def get_model(self, name: str, version: str = "") -> ModelInfo:
        """One model version ("" = highest); RemoteError with NOT_FOUND when there is none."""
        return self._run(_get_model_plan(name, version))

    def wait_until_serving(self, timeout_s: float = 30.0, *, model: str = "") -> None:
        """Poll grpc.health.v1 until the server (or one model) reports SERVING.

        Args:
            timeout_s: Seconds to wait in all.
            model: Model name to wait for; "" waits for the whole server.

        Raises:
            TimeoutError: Not SERVING within ``timeout_s`` (the message says the last answer).
            ModelNotFoundError: The server is SERVING (every model of its repository loaded)
                and ``model`` is not one of them (the message lists the served models).
        """
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.target} {'model ' + repr(model) if model else 'server'} not SERVING "
                    f"after {timeout_s} s (last: {last})"
                )
            try:
                response = self._health.Check(
                    health_pb2.HealthCheckRequest(service=model),
                    timeout=min(remaining, 2.0),
                    metadata=self._metadata,
                )
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            except grpc.RpcError as e:
                if model and e.code() == grpc.StatusCode.NOT_FOUND and self._health_serving(""):
                    # Every model of the repository is loaded, and this one is not among them.
                    try:
                        names = sorted(m.name for m in self.list_models())
                    except SslServeError:  # e.g. ListModels needs a token this client lacks
                        names = []
                    raise ModelNotFoundError(model, available=names) from None
                last = f"{e.code().name}: {e.details() or 'no such health service'}"
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def _health_serving(self, service: str) -> bool:
        try:
            response = self._health.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2.0, metadata=self._metadata
            )
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> EmbeddingClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, plan: _Plan[_T]) -> _T:
        """Drive a plan: make each call it yields and send it the response (or the error)."""
        try:
            step = next(plan)
            while True:
                try:
                    response = self._call(*step)
                except RemoteError as e:
                    step = plan.throw(e)
                else:
                    step = plan.send(response)
        except StopIteration as stop:
            return stop.value

    def _call(self, method: str, request: Any) -> Any:
        """One unary RPC, repeated as :attr:`retry` says, all within :attr:`timeout_s`."""
        rpc = getattr(self._stub, method)
        deadline = time.monotonic() + self.timeout_s
        attempt = 0
        while True:
            try:
                return rpc(request, timeout=_remaining(deadline), metadata=self._metadata)
            except grpc.RpcError as e:
                delay = self.retry.delay_s(e.code(), attempt, deadline)
                if delay is None:
                    raise _remote_error(e, attempt) from e
            time.sleep(delay)
            attempt += 1


class AsyncEmbeddingClient:
    """The asyncio twin of :class:`EmbeddingClient` (``grpc.aio``): same arguments, same methods.

    Every method of :class:`EmbeddingClient` is a coroutine here with the same arguments,
    return values (numpy arrays, :class:`TextEmbeddings`, :class:`Classifications`,
    :class:`ModelInfo`) and errors; :meth:`embed_stream` is an async iterator. Requests are
    built and responses decoded by the same code as the blocking client's, and unary calls
    answered UNAVAILABLE are retried the same way (:class:`RetryPolicy`), with
    ``asyncio.sleep`` between attempts. Create it inside a running event loop and use it as an
    async context manager (or await :meth:`close`).

    Args:
        target: Server address, "host:port".
        timeout_s: Deadline of each call, in seconds, its retries included.
        max_message_bytes: Largest message sent or received, in bytes.
        tls: Speak TLS with the system's CAs (implied by every other ``tls_`` argument).
        tls_ca: CA certificate(s) of the server, PEM (a path or the bytes).
        tls_cert: Client certificate chain, PEM (mutual TLS); with ``tls_key``.
        tls_key: The client certificate's private key, PEM.
        tls_server_name: Name to check the server's certificate against.
        token: Bearer token sent on every call.
        retries: Most repeats of a unary call answered UNAVAILABLE (0: none).
        retry_backoff_s: Backoff before the first repeat, in seconds (doubling each time).
        retry_max_backoff_s: Largest backoff, in seconds.

    Raises:
        ValueError: As for :class:`EmbeddingClient`.
        OSError: A TLS file cannot be read.

    Example:
        >>> async def main() -> None:  # doctest: +SKIP
        ...     async with AsyncEmbeddingClient("127.0.0.1:50051") as client:
        ...         a, b = await asyncio.gather(
        ...             client.embed_texts("minilm", ["a red dress"]),
        ...             client.embed_texts("minilm", ["a blue shoe"]),
        ...         )
    """

    def __init__(
        self,
        target: str,
        *,
        timeout_s: float = 30.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        tls: bool = False,
        tls_ca: str | Path | bytes | None = None,
        tls_cert: str | Path | bytes | None = None,
        tls_key: str | Path | bytes | None = None,
        tls_server_name: str | None = None,
        token: str | None = None,
        retries: int = 3,
        retry_backoff_s: float = 0.1,
        retry_max_backoff_s: float = 2.0,
    ) -> None:
        self.retry = RetryPolicy(retries, retry_backoff_s, retry_max_backoff_s)
        settings = _channel_settings(
            target,
            timeout_s=timeout_s,
            max_message_bytes=max_message_bytes,
            retry=self.retry,
            tls=tls,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_server_name=tls_server_name,
            token=token,
        )
        self.target = target
        self.timeout_s = timeout_s
        self.tls = settings.credentials is not None
        self._metadata = settings.metadata
        if settings.credentials is not None:
            self._channel = grpc.aio.secure_channel(
                target, settings.credentials, options=settings.options
            )
        else:
            self._channel = grpc.aio.insecure_channel(target, options=settings.options)
        self._stub = embedding_pb2_grpc.EmbeddingServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def embed(
        self, request: embedding_pb2.EmbedRequest
    ) -> tuple[np.ndarray, embedding_pb2.EmbedResponse]:
        """As :meth:`EmbeddingClient.embed`: ``(N, D) float32`` embeddings and the response."""
        return await self._run(_embed_one(request))

    async def embed_stream(
        self,
        requests: Iterable[embedding_pb2.EmbedRequest] | AsyncIterator[embedding_pb2.EmbedRequest],
        *,
        timeout_s: float | None = None,
    ) -> AsyncIterator[tuple[np.ndarray, embedding_pb2.EmbedResponse]]:
        """As :meth:`EmbeddingClient.embed_stream`, as an async iterator.

        Args:
            requests: The requests, an iterable or an async iterator (consumed lazily).
            timeout_s: Deadline of the whole stream, in seconds; None sets none.

        Yields:
            Per request, in order: ``(N, D) float32`` embeddings and the response.

        Raises:
            RemoteError: A request or the stream failed (the stream is cancelled).
        """
        call = self._stub.EmbedStream(requests, timeout=timeout_s, metadata=self._metadata)
        try:
            async for response in call:
                yield _streamed(response)
        except grpc.RpcError as e:
            raise RemoteError(e.code(), e.details() or "") from e
        finally:
            call.cancel()

    async def classify(
        self, request: embedding_pb2.ClassifyRequest
    ) -> embedding_pb2.ClassifyResponse:
        """As :meth:`EmbeddingClient.classify`."""
        return await self._run(_one("Classify", request))

    async def classify_images(
        self,
        model: str,
        images: Sequence[bytes],
        *,
        top_k: int = 5,
        version: str = "",
        batch_size: int = 256,
    ) -> Classifications:
        """As :meth:`EmbeddingClient.classify_images`."""
        plan = _classify_plan(model, _image_inputs(images), top_k, version, batch_size)
        return await self._run(plan)

    async def classify_texts(
        self,
        model: str,
        texts: Sequence[str],
        *,
        top_k: int = 5,
        version: str = "",
        batch_size: int = 256,
    ) -> Classifications:
        """As :meth:`EmbeddingClient.classify_texts`."""
        plan = _classify_plan(model, _text_inputs(texts), top_k, version, batch_size)
        return await self._run(plan)

    async def classify_audio(
        self,
        model: str,
        files: Sequence[bytes],
        *,
        top_k: int = 5,
        version: str = "",
        batch_size: int = 32,
    ) -> Classifications:
        """As :meth:`EmbeddingClient.classify_audio` (WAV/FLAC files' bytes)."""
        plan = _classify_plan(model, _audio_inputs(files), top_k, version, batch_size)
        return await self._run(plan)

    async def classify_raw_audio(
        self,
        model: str,
        clips: Sequence[np.ndarray],
        sample_rate_hz: float,
        *,
        top_k: int = 5,
        version: str = "",
        batch_size: int = 32,
    ) -> Classifications:
        """As :meth:`EmbeddingClient.classify_raw_audio` (``(T_i,)`` samples at one rate)."""
        inputs = _raw_audio_inputs(clips, sample_rate_hz)
        return await self._run(_classify_plan(model, inputs, top_k, version, batch_size))

    async def classify_tensors(
        self,
        model: str,
        tensors: np.ndarray,
        *,
        top_k: int = 5,
        version: str = "",
        batch_size: int = 256,
    ) -> Classifications:
        """As :meth:`EmbeddingClient.classify_tensors` (``(N, C, H, W) float32`` inputs)."""
        plan = _classify_plan(model, _tensor_inputs(tensors), top_k, version, batch_size)
        return await self._run(plan)

    async def embed_images(
        self, model: str, images: Sequence[bytes], *, version: str = "", batch_size: int = 256
    ) -> np.ndarray:
        """As :meth:`EmbeddingClient.embed_images`: ``(N, D) float32``."""
        return await self._run(_embed_plan(model, _image_inputs(images), version, batch_size))

    async def embed_audio(
        self, model: str, files: Sequence[bytes], *, version: str = "", batch_size: int = 32
    ) -> np.ndarray:
        """As :meth:`EmbeddingClient.embed_audio`: ``(N, D) float32``."""
        return await self._run(_embed_plan(model, _audio_inputs(files), version, batch_size))

    async def embed_raw_audio(
        self,
        model: str,
        clips: Sequence[np.ndarray],
        sample_rate_hz: float,
        *,
        version: str = "",
        batch_size: int = 32,
    ) -> np.ndarray:
        """As :meth:`EmbeddingClient.embed_raw_audio`: ``(N, D) float32``."""
        inputs = _raw_audio_inputs(clips, sample_rate_hz)
        return await self._run(_embed_plan(model, inputs, version, batch_size))

    async def embed_tensors(
        self, model: str, tensors: np.ndarray, *, version: str = "", batch_size: int = 256
    ) -> np.ndarray:
        """As :meth:`EmbeddingClient.embed_tensors`: ``(N, D) float32``."""
        return await self._run(_embed_plan(model, _tensor_inputs(tensors), version, batch_size))

    async def embed_texts(
        self, model: str, texts: Sequence[str], *, version: str = "", batch_size: int = 256
    ) -> np.ndarray:
        """As :meth:`EmbeddingClient.embed_texts`: ``(N, D) float32``."""
        plan = _text_plan(model, _text_inputs(texts), version, batch_size)
        return (await self._run(plan)).embeddings

    async def embed_texts_detailed(
        self, model: str, texts: Sequence[str], *, version: str = "", batch_size: int = 256
    ) -> TextEmbeddings:
        """As :meth:`EmbeddingClient.embed_texts_detailed`."""
        return await self._run(_text_plan(model, _text_inputs(texts), version, batch_size))

    async def embed_token_ids(
        self,
        model: str,
        sequences: Sequence[np.ndarray],
        *,
        version: str = "",
        batch_size: int = 256,
    ) -> np.ndarray:
        """As :meth:`EmbeddingClient.embed_token_ids`: ``(N, D) float32``."""
        plan = _text_plan(model, _token_inputs(sequences), version, batch_size)
        return (await self._run(plan)).embeddings

    async def list_models(self) -> list[ModelInfo]:
        """Every model version the server holds."""
        return await self._run(_list_models_plan())

    async def get_model(self, name: str, version: str = "") -> ModelInfo:
        """One model version ("" = highest); RemoteError with NOT_FOUND when there is none."""
        return await self._run(_get_model_plan(name, version))

    async def wait_until_serving(self, timeout_s: float = 30.0, *, model: str = "") -> None:
        """As :meth:`EmbeddingClient.wait_until_serving`.

        Raises:
            TimeoutError: Not SERVING within ``timeout_s``.
            ModelNotFoundError: The server is SERVING and ``model`` is not one of its models.
        """
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.target} {'model ' + repr(model) if model else 'server'} not SERVING "
                    f"after {timeout_s} s (last: {last})"
                )
            try:
                response = await self._health.Check(
                    health_pb2.HealthCheckRequest(service=model),
                    timeout=min(remaining, 2.0),
                    metadata=self._metadata,
                )
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            except grpc.RpcError as e:
                code = e.code()
                if model and code == grpc.StatusCode.NOT_FOUND and await self._health_serving(""):
                    try:
                        names = sorted(m.name for m in await self.list_models())
                    except SslServeError:
                        names = []
                    raise ModelNotFoundError(model, available=names) from None
                last = f"{code.name}: {e.details() or 'no such health service'}"
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    async def _health_serving(self, service: str) -> bool:
        try:
            response = await self._health.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2.0, metadata=self._metadata
            )
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        """Close the channel (calls in flight are cancelled)."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncEmbeddingClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run(self, plan: _Plan[_T]) -> _T:
        """Drive a plan as :meth:`EmbeddingClient._run` does, awaiting each call."""
        try:
            step = next(plan)
            while True:
                try:
                    response = await self._call(*step)
                except RemoteError as e:
                    step = plan.throw(e)
                else:
                    step = plan.send(response)
        except StopIteration as stop:
            return stop.value

    async def _call(self, method: str, request: Any) -> Any:
        """One unary RPC, repeated as :attr:`retry` says, all within :attr:`timeout_s`."""
        rpc = getattr(self._stub, method)
        deadline = time.monotonic() + self.timeout_s
        attempt = 0
        while True:
            try:
                return await rpc(request, timeout=_remaining(deadline), metadata=self._metadata)
            except grpc.RpcError as e:
                delay = self.retry.delay_s(e.code(), attempt, deadline)
                if delay is None:
                    raise _remote_error(e, attempt) from e
            await asyncio.sleep(delay)
            attempt += 1


# Plans: the request building and response decoding both clients share. Each yields
# (RPC name, request) and receives the response; a failed call is thrown into it as RemoteError.


def _one(method: str, request: Any) -> _Plan[Any]:
    """One call, its response returned as it is."""
    return (yield method, request)


def _embed_one(
    request: embedding_pb2.EmbedRequest,
) -> _Plan[tuple[np.ndarray, embedding_pb2.EmbedResponse]]:
    response = yield "Embed", request
    return _embeddings(response), response


def _list_models_plan() -> _Plan[list[ModelInfo]]:
    response = yield "ListModels", embedding_pb2.ListModelsRequest()
    return [ModelInfo.from_proto(m) for m in response.models]


def _get_model_plan(name: str, version: str) -> _Plan[ModelInfo]:
    request = embedding_pb2.GetModelRequest(model_name=name, model_version=version)
    return ModelInfo.from_proto((yield "GetModel", request))


def _embed_plan(
    model: str,
    inputs: list[embedding_pb2.Input],
    version: str,
    batch_size: int,
    responses: list[embedding_pb2.EmbedResponse] | None = None,
) -> _Plan[np.ndarray]:
    """Embed ``inputs`` in requests of ``batch_size``; ``(N, D) float32`` in input order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not inputs:
        info = yield from _get_model_plan(model, version)
        return np.zeros((0, info.embedding_dim), dtype=np.float32)
    parts = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start : start + batch_size]
        request = embedding_pb2.EmbedRequest(model_name=model, model_version=version, inputs=chunk)
        try:
            response = yield "Embed", request
        except RemoteError as e:
            if start == 0 and len(chunk) == len(inputs):
                raise
            # The server numbers inputs within its request; say which request that was.
            where = f"request with inputs {start}..{start + len(chunk) - 1}"
            raise RemoteError(e.code, f"{where}: {e.details}") from e.__cause__
        parts.append(_embeddings(response))
        if responses is not None:
            responses.append(response)
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


def _text_plan(
    model: str, inputs: list[embedding_pb2.Input], version: str, batch_size: int
) -> _Plan[TextEmbeddings]:
    responses: list[embedding_pb2.EmbedResponse] = []
    embeddings = yield from _embed_plan(model, inputs, version, batch_size, responses)
    truncated = np.asarray([t for r in responses for t in r.truncated], dtype=bool)
    if len(truncated) != len(embeddings):
        raise SslServeError(
            f"server sent {len(truncated)} truncated flags for {len(embeddings)} texts "
            "(is the model a text model?)"
        )
    return TextEmbeddings(embeddings, truncated, sum(int(r.usage.tokens) for r in responses))


def _classify_plan(
    model: str,
    inputs: list[embedding_pb2.Input],
    top_k: int,
    version: str,
    batch_size: int,
) -> _Plan[Classifications]:
    if min(top_k, batch_size, len(inputs)) < 1:
        raise ValueError(
            f"top_k ({top_k}), batch_size ({batch_size}) and the number of inputs "
            f"({len(inputs)}) must be >= 1"
        )
    labels: tuple[str, ...] = ()
    parts: list[np.ndarray] = []
    top: list[list[tuple[str, float]]] = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start : start + batch_size]
        request = embedding_pb2.ClassifyRequest(
            model_name=model, model_version=version, inputs=chunk, top_k=top_k
        )
        try:
            response = yield "Classify", request
        except RemoteError as e:
            if start == 0 and len(chunk) == len(inputs):
                raise
            where = f"request with inputs {start}..{start + len(chunk) - 1}"
            raise RemoteError(e.code, f"{where}: {e.details}") from e.__cause__
        labels = tuple(response.labels)
        probs = _packed(response.probabilities, response.shape, "probabilities")
        if probs.shape != (len(chunk), len(labels)) or len(response.classifications) != len(chunk):
            raise SslServeError(
                f"server sent probabilities {probs.shape} and "
                f"{len(response.classifications)} classifications for {len(chunk)} inputs "
                f"and {len(labels)} labels"
            )
        parts.append(probs)
        top.extend(
            [(p.label, float(p.probability)) for p in c.top] for c in response.classifications
        )
    probabilities = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    return Classifications(labels, probabilities, top)


def _image_inputs(images: Sequence[bytes]) -> list[embedding_pb2.Input]:
    return [embedding_pb2.Input(image=bytes(b)) for b in images]


def _audio_inputs(files: Sequence[bytes]) -> list[embedding_pb2.Input]:
    return [embedding_pb2.Input(audio=bytes(b)) for b in files]


def _raw_audio_inputs(
    clips: Sequence[np.ndarray], sample_rate_hz: float
) -> list[embedding_pb2.Input]:
    return [
        embedding_pb2.Input(
            raw_audio=embedding_pb2.RawAudio(
                samples=np.ascontiguousarray(c, dtype="<f4").tobytes(),
                sample_rate_hz=sample_rate_hz,
            )
        )
        for c in clips
    ]


def _tensor_inputs(tensors: np.ndarray) -> list[embedding_pb2.Input]:
    """Float32 tensor inputs from ``(N, C, H, W)``; InvalidInputError for another rank."""
    x = np.asarray(tensors, dtype="<f4")
    if x.ndim != 4:
        raise InvalidInputError(f"tensors must be (N, C, H, W), got shape {x.shape}")
    return [
        embedding_pb2.Input(
            tensor=embedding_pb2.Tensor(dtype="float32", shape=t.shape, data=t.tobytes())
        )
        for t in x
    ]


def _text_inputs(texts: Sequence[str]) -> list[embedding_pb2.Input]:
    return [embedding_pb2.Input(text=str(t)) for t in texts]


def _token_inputs(sequences: Sequence[np.ndarray]) -> list[embedding_pb2.Input]:
    """Token-id tensor inputs; InvalidInputError for a sequence not 1-D int32/int64."""
    inputs = []
    for i, seq in enumerate(sequences):
        a = np.asarray(seq)
        if a.ndim != 1 or a.dtype not in (np.int32, np.int64):
            raise InvalidInputError(
                f"sequence {i} must be a 1-D int32 or int64 array, got {a.dtype} {a.shape}"
            )
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        tensor = embedding_pb2.Tensor(dtype=a.dtype.name, shape=a.shape, data=data)
        inputs.append(embedding_pb2.Input(tensor=tensor))
    return inputs


def _streamed(
    response: embedding_pb2.EmbedResponse,
) -> tuple[np.ndarray, embedding_pb2.EmbedResponse]:
    """One EmbedStream answer decoded; RemoteError for an answer that carries an ``error``."""
    if response.HasField("error"):
        error = response.error
        code = _STATUS_CODES.get(error.code, grpc.StatusCode.UNKNOWN)
        raise RemoteError(code, f"request {response.request_id}: {error.message}")
    return _embeddings(response), response


def _remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (monotonic clock), at least 1 ms for gRPC."""
    return max(deadline - time.monotonic(), 0.001)


def _remote_error(error: grpc.RpcError, retries: int) -> RemoteError:
    """The RemoteError of a call's last failed attempt (the message counts the retries)."""
    details = error.details() or ""
    if retries:
        details = f"{details} (after {retries} retr{'y' if retries == 1 else 'ies'})"
    return RemoteError(error.code(), details)


def _pem(value: str | Path | bytes | None) -> bytes | None:
    """PEM bytes given as bytes or as a file path (None stays None)."""
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


def _embeddings(response: embedding_pb2.EmbedResponse) -> np.ndarray:
    return _packed(response.embeddings, response.shape, "embeddings")


def _packed(data: bytes, dims: Sequence[int], what: str) -> np.ndarray:
    """A ``(N, D)`` float32 matrix from little-endian packed bytes and its shape."""
    shape = tuple(int(d) for d in dims)
    if len(shape) != 2 or len(data) != shape[0] * shape[1] * 4:
        raise SslServeError(f"server sent {len(data)} bytes of {what} for shape {list(shape)}")
    return np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float32)
