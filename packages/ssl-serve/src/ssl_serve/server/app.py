"""The gRPC server process: EmbeddingService, KServe v2, grpc.health.v1, reflection, shutdown.

Requests reach the models through the dynamic batcher (:mod:`ssl_serve.server.batcher`); TLS,
mutual TLS and bearer tokens are set up here from :mod:`ssl_serve.server.security`; hot reload
of the repository is :mod:`ssl_serve.server.reload`.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ssl_serve.errors import BundleError, SslServeError
from ssl_serve.preprocess import DEFAULT_MAX_PIXELS
from ssl_serve.repository import ModelRepository, empty_repository_hint
from ssl_serve.runtime import execution_providers
from ssl_serve.server.batcher import BatchingConfig, DynamicBatcher
from ssl_serve.server.decoding import RequestDecodingInterceptor
from ssl_serve.server.metrics import MetricsEndpoint, ServerMetrics
from ssl_serve.server.models import ModelRegistry
from ssl_serve.server.reload import ReloadReport, RepositoryWatcher
from ssl_serve.server.security import BearerTokenInterceptor, server_credentials
from ssl_serve.server.service import DEFAULT_MAX_TEXT_CHARS, EmbeddingServicer
from ssl_serve.v1 import embedding_pb2, embedding_pb2_grpc

log = logging.getLogger(__name__)

MIB = 1024 * 1024
EMBEDDING_SERVICE = embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].full_name
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


@dataclass(frozen=True)
class ServerConfig:
    """Everything `ssl-serve serve` can set.

    Attributes:
        repository: Model repository folder (`<name>/<version>/` bundle folders).
        host: Interface to listen on, e.g. "127.0.0.1", "0.0.0.0" or "[::]".
        port: TCP port; 0 picks a free one (see :attr:`EmbeddingServer.port`).
        intra_op_threads: onnxruntime threads per model; None = available CPUs, at most 8.
        device: ``"cpu"`` (default) or ``"cuda"``: the onnxruntime execution provider every
            model runs on; the server refuses to start when it is not installed or a session
            falls back to another (:func:`~ssl_serve.runtime.execution_providers`).
        max_batch_size: Most inputs the dynamic batcher merges from several requests into one
            batch, and most per onnxruntime run; a bigger request runs alone, in chunks.
        max_batch_tokens: Text models: most real tokens merged into one batch, and most
            padded tokens (sequences x longest length) per onnxruntime run; the texts of a
            batch are sorted by length and padded per sub-batch.
        max_queue_delay_ms: Longest wait, in milliseconds, for more requests to join a batch
            (only while more requests for the model are being decoded or tokenised); 0
            never waits.
        max_queue_size: Most requests waiting per model version; more are RESOURCE_EXHAUSTED.
        max_message_bytes: Largest request or response message, in bytes.
        workers: Threads handling RPCs (decoding images runs on them; each waits there while
            its request is queued or running, so it also bounds the requests one batch can
            merge).
        max_concurrent_rpcs: RPCs in flight before new ones get RESOURCE_EXHAUSTED.
        max_inputs_per_request: Inputs per Embed call before RESOURCE_EXHAUSTED.
        max_image_pixels: Largest width x height of one image, in pixels.
        max_text_chars: Longest text input, in characters (code points); longer is
            INVALID_ARGUMENT. A model reads only its first ``max_length`` tokens anyway: this
            bounds the tokenisation work one input can cost.
        grace_s: Seconds in-flight RPCs get to finish on shutdown.
        metrics_port: TCP port of the Prometheus metrics HTTP endpoint on ``host``; None
            (the default) serves no metrics, 0 picks a free port.
        tls_cert: Server certificate chain, PEM; with ``tls_key``, the port speaks TLS only.
        tls_key: The certificate's private key, PEM (unencrypted).
        tls_client_ca: CA certificate(s), PEM: require client certificates signed by them
            (mutual TLS); needs ``tls_cert``.
        tokens: Bearer tokens accepted (any one); when set, every RPC but grpc.health.v1 must
            carry metadata ``authorization: Bearer <token>`` or is UNAUTHENTICATED.
        reload_interval_s: Seconds between polls of the repository for added, changed and
            removed version folders (hot reload, :mod:`ssl_serve.server.reload`); None (the
            default) loads the repository once, at start.
    """

    repository: Path
    host: str = "127.0.0.1"
    port: int = 50051
    intra_op_threads: int | None = None
    device: str = "cpu"
    max_batch_size: int = 256
    max_batch_tokens: int = 8192
    max_message_bytes: int = 64 * MIB
    workers: int = 8
    max_concurrent_rpcs: int = 64
    max_inputs_per_request: int = 4096
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    grace_s: float = 10.0
    metrics_port: int | None = None
    max_queue_delay_ms: float = 2.0
    max_queue_size: int = 64
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    tokens: tuple[str, ...] = ()
    reload_interval_s: float | None = None

    @property
    def batching(self) -> BatchingConfig:
        """The dynamic batcher's limits."""
        return BatchingConfig(
            max_batch_size=self.max_batch_size,
            max_batch_tokens=self.max_batch_tokens,
            max_queue_delay_s=self.max_queue_delay_ms / 1000,
            max_queue_size=self.max_queue_size,
        )


def format_address(host: str, port: int) -> str:
    """``host:port``, bracketing a bare IPv6 host (``[::1]:50051``)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


class EmbeddingServer:
    """An ssl-serve gRPC server over one model repository.

    Scans the repository on construction; :meth:`start` binds the port, then loads and warms
    every model. Serves ``ssl_serve.v1.EmbeddingService`` and, on the same port,
    ``inference.GRPCInferenceService`` (KServe v2, :mod:`ssl_serve.server.kserve`). Health (""
    for the whole server, and one service per model name) says NOT_SERVING until a model is
    warmed, then SERVING; Embed answers UNAVAILABLE meanwhile, and KServe's ServerReady is false
    until every model is warmed and again once draining starts. Use as a context manager to
    stop it on exit.

    Args:
        config: Server settings.

    With ``config.tls_cert``/``tls_key`` the port speaks TLS only (``tls_client_ca``: mutual
    TLS); with ``config.tokens`` every RPC but grpc.health.v1 needs a bearer token.

    Raises:
        BundleError: The repository holds no model version, or it or one of its bundles is
            invalid.
        SslServeError: A TLS file cannot be read, a TLS option lacks its partner, or a token
            is malformed.
        ValueError: A batching limit or the reload interval is out of range.

    With ``config.reload_interval_s``, a watcher polls the repository once serving and adds,
    replaces (side by side, then an atomic swap) and removes model versions without failing a
    request; see :mod:`ssl_serve.server.reload`.
    """

    def __init__(self, config: ServerConfig) -> None:
        if config.reload_interval_s is not None and not config.reload_interval_s > 0:
            raise ValueError(
                f"reload_interval_s must be > 0 seconds (None: no hot reload), got "
                f"{config.reload_interval_s}"
            )
        self.config = config
        self._credentials = _credentials(config)
        batching = config.batching
        repository = ModelRepository(config.repository)
        if len(repository) == 0:
            raise BundleError(config.repository, empty_repository_hint(config.repository))
        self.registry = ModelRegistry(
            repository,
            intra_op_threads=config.intra_op_threads,
            max_batch_size=config.max_batch_size,
            max_batch_tokens=config.max_batch_tokens,
            providers=execution_providers(config.device),
        )
        self.metrics = ServerMetrics(repository.names())
        self.metrics.track_models_loaded(lambda: sum(m.ready for m in self.registry.models()))
        self._metrics_endpoint: MetricsEndpoint | None = None
        self.batcher = DynamicBatcher(self.registry, batching, self.metrics)
        self.health = health.HealthServicer(experimental_non_blocking=True)
        interceptors: list[grpc.ServerInterceptor] = []
        if config.tokens:
            interceptors.append(BearerTokenInterceptor(config.tokens, metrics=self.metrics))
        interceptors.append(RequestDecodingInterceptor())  # innermost: after the token check
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="rpc"),
            maximum_concurrent_rpcs=config.max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                # gRPC sets SO_REUSEPORT by default, so a second server on a busy port would
                # bind too and the kernel would split connections between the two.
                ("grpc.so_reuseport", 0),
            ],
            interceptors=interceptors,
        )
        servicer = EmbeddingServicer(
            self.registry,
            batcher=self.batcher,
            max_inputs_per_request=config.max_inputs_per_request,
            max_image_pixels=config.max_image_pixels,
            max_text_chars=config.max_text_chars,
            metrics=self.metrics,
        )
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(servicer, self._server)
        # Imported here, not at the top: the KServe stubs register the protobuf package
        # `inference`, as tritonclient's do, and the two cannot share a process; importing
        # ssl_serve.server (or a client beside tritonclient) must not register it.
        from ssl_serve.server import kserve

        self._ready = threading.Event()
        kserve.add_to_server(
            kserve.KServeServicer(
                self.registry,
                batcher=self.batcher,
                is_ready=self._ready.is_set,
                max_batch_size=config.max_inputs_per_request,
                metrics=self.metrics,
            ),
            self._server,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (
                EMBEDDING_SERVICE,
                kserve.SERVICE_NAME,
                health.SERVICE_NAME,
                reflection.SERVICE_NAME,
            ),
            self._server,
        )
        self.health.set("", _NOT_SERVING)
        for name in self.registry.repository.names():
            self.health.set(name, _NOT_SERVING)
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.watcher: RepositoryWatcher | None = None
        if config.reload_interval_s is not None:
            self.watcher = RepositoryWatcher(
                self.registry,
                self.batcher,
                interval_s=config.reload_interval_s,
                drain_timeout_s=max(config.grace_s, 30.0),
                metrics=self.metrics,
                on_swap=self._on_swap,
            )

    def _on_swap(self, names_before: set[str], names_after: set[str]) -> None:
        """Per-model health after a hot reload: SERVING for every name served, unknown for gone."""
        for name in sorted(names_after):
            self.health.set(name, _SERVING)
        for name in sorted(names_before - names_after):
            self.health.set(name, _SERVICE_UNKNOWN)

    def reload(self) -> ReloadReport:
        """Poll the repository once now (hot reload must be on; changes need two polls).

        Returns:
            What the poll added, replaced, removed, or failed to load.

        Raises:
            SslServeError: The server was made without ``reload_interval_s``.
        """
        if self.watcher is None:
            raise SslServeError("hot reload is off; set reload_interval_s (--reload-interval-s)")
        return self.watcher.poll()

    @property
    def address(self) -> str:
        """``host:port`` the server listens on (after :meth:`start`)."""
        if self.port is None:
            raise SslServeError("server not started; call start() first")
        return format_address(self.config.host, self.port)

    def start(self) -> int:
        """Bind, start answering RPCs (and metrics), then load and warm every model.

        Blocks until every model is warm. With ``config.metrics_port`` set, the Prometheus
        endpoint starts before the models load (``ssl_serve_models_loaded`` counts them in) and
        :attr:`metrics_port` is its bound port.

        Returns:
            The bound port (the free port picked when the configured port is 0).

        Raises:
            SslServeError: The gRPC or metrics address cannot be bound.
            BundleError: A model fails to load or warm up (the server is stopped).
        """
        address = format_address(self.config.host, self.config.port)
        try:
            if self._credentials is None:
                port = self._server.add_insecure_port(address)
            else:
                port = self._server.add_secure_port(address, self._credentials)
        except RuntimeError as e:
            raise SslServeError(
                f"cannot listen on {address} (address in use? not a local address?): {e}"
            ) from e
        if port == 0:
            raise SslServeError(
                f"cannot listen on {address} (address in use? not a local address?)"
            )
        self.port = port
        if self.config.metrics_port is not None:
            try:
                endpoint = MetricsEndpoint(self.metrics, self.config.host, self.config.metrics_port)
            except SslServeError:
                self._server.stop(None)
                raise
            self._metrics_endpoint = endpoint
            self.metrics_port = endpoint.port
        self.batcher.start()
        self._server.start()
        log.info("%s", self.security_summary)
        t0 = time.perf_counter()
        try:
            self.registry.load_all(on_model_ready=lambda name: self.health.set(name, _SERVING))
        except BaseException:
            self._server.stop(None)
            self.batcher.stop()
            self._stop_metrics()
            raise
        self.health.set("", _SERVING)
        self._ready.set()
        log.info(
            "serving %d model version(s) on %s (loaded in %.0f ms)",
            len(self.registry.models()),
            self.address,
            1000 * (time.perf_counter() - t0),
        )
        if self.watcher is not None:
            self.watcher.start()
            log.info(
                "hot reload: polling %s every %.1f s",
                self.registry.repository.root,
                self.watcher.interval_s,
            )
        return port

    def stop(self, grace_s: float | None = None) -> None:
        """Drain: report NOT_SERVING, refuse new RPCs, let in-flight ones finish, then stop.

        Args:
            grace_s: Seconds in-flight RPCs get before they are cancelled; None uses the
                config's ``grace_s``.
        """
        grace = self.config.grace_s if grace_s is None else grace_s
        if self.watcher is not None:
            # Not longer: a poll waiting for an old version's requests must not eat the grace.
            self.watcher.stop(timeout_s=5.0)
        self._ready.clear()
        self.health.enter_graceful_shutdown()
        self._server.stop(grace).wait()
        self.batcher.stop()
        self._stop_metrics()

    @property
    def security_summary(self) -> str:
        """One line on transport security and authentication, e.g. for the log."""
        c = self.config
        if c.tls_cert is None:
            transport = "plaintext (no TLS)"
        elif c.tls_client_ca is None:
            transport = "TLS"
        else:
            transport = "mutual TLS (client certificates required)"
        auth = f"bearer token ({len(c.tokens)} accepted)" if c.tokens else "no token"
        return f"transport: {transport}; authentication: {auth}; grpc.health.v1 open"

    @property
    def metrics_address(self) -> str | None:
        """``host:port`` of the metrics endpoint; None when metrics are off or not started."""
        if self.metrics_port is None:
            return None
        return format_address(self.config.host, self.metrics_port)

    def _stop_metrics(self) -> None:
        if self._metrics_endpoint is not None:
            self._metrics_endpoint.stop()
            self._metrics_endpoint = None

    def wait_for_termination(self, timeout_s: float | None = None) -> bool:
        """Block until the server stops; returns True when it did within ``timeout_s``."""
        return bool(self._server.wait_for_termination(timeout_s))

    def __enter__(self) -> EmbeddingServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """The server's TLS credentials (None: plaintext), after checking the options agree."""
    if (config.tls_cert is None) != (config.tls_key is None):
        raise SslServeError("--tls-cert and --tls-key go together: give both, or neither")
    if config.tls_cert is None or config.tls_key is None:
        if config.tls_client_ca is not None:
            raise SslServeError(
                "--tls-client-ca (mutual TLS) needs TLS: give --tls-cert and --tls-key too"
            )
        if config.tokens:
            log.warning(
                "bearer tokens over plaintext: anyone on the network path can read them; "
                "use --tls-cert/--tls-key, or a TLS-terminating proxy on the same host"
            )
        return None
    return server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca)


def run_until_signal(server: EmbeddingServer, on_ready: Callable[[], None] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then stop gracefully (main thread only).

    Args:
        server: A started server.
        on_ready: Called once the signal handlers are installed, e.g. to print that the
            server listens: a supervisor that signals right after that line is then never
            met by the default handler (which would kill the process without draining).

    Returns:
        The number of the signal that stopped it.
    """
    received: list[int] = []
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if on_ready is not None:
            on_ready()
        while not stop.wait(0.5):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    log.info(
        "received %s; draining (grace %.1f s)",
        signal.Signals(received[0]).name,
        server.config.grace_s,
    )
    server.stop()
    return received[0]
