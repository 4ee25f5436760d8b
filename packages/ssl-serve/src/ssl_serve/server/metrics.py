"""Prometheus metrics of a server: requests by code, latencies, inputs, tokens, models loaded.

The metrics live in their own ``prometheus_client.CollectorRegistry`` (not the library's global
one), so several servers in one process keep separate counts; :class:`MetricsEndpoint` serves
them in the Prometheus text format over HTTP on a port of their own (``--metrics-port``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ssl_serve.errors import SslServeError

# Label value for a request naming a model the repository does not hold: request-supplied names
# would otherwise let any client create unbounded label sets.
UNKNOWN_MODEL = "(unknown)"
# Seconds: from 0.5 ms (a small image model's run) to 10 s (a large text batch on a busy CPU).
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Inputs per request, up to the default per-request limit (4096).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class ServerMetrics:
    """The counters, histograms and gauge one server updates.

    Families (names as ``prometheus_client.parser`` reports them; counters' samples end in
    ``_total``, histograms' in ``_bucket``/``_sum``/``_count``):

    - ``ssl_serve_requests`` (counter; labels ``model``, ``method``, ``code``): RPCs answered,
      and each request of an ``EmbedStream`` stream, by gRPC status code name (``OK``,
      ``INVALID_ARGUMENT``, ...). ``model`` is the requested model when the repository holds it,
      ``(unknown)`` when it does not, empty for calls without a model (ListModels,
      ServerLive, ...).
    - ``ssl_serve_request_duration_seconds`` (histogram; ``model``, ``method``): handler time.
    - ``ssl_serve_queue_seconds`` / ``ssl_serve_inference_seconds`` (histograms; ``model``,
      ``method``): waiting in the model's batch queue (for the batch to fill and for the model,
      which runs one batch at a time) / in onnxruntime (its batch, until its rows were done),
      per request that ran.
    - ``ssl_serve_request_inputs`` (histogram; ``model``, ``method``): inputs per request.
    - ``ssl_serve_inputs`` / ``ssl_serve_tokens`` (counters; ``model``, ``method``): inputs run
      by the model, and tokens read (text models; special tokens in, padding out).
    - ``ssl_serve_models_loaded`` (gauge): model versions loaded and warmed.
    - ``ssl_serve_batch_size`` / ``ssl_serve_batch_requests`` (histograms; ``model``): inputs,
      and requests, per batch the dynamic batcher ran (requests of several clients merged).
    - ``ssl_serve_dropped_requests`` (counter; ``model``, ``reason``): requests the batcher did
      not run: ``deadline`` (the deadline passed while queued), ``cancelled`` (the client
      cancelled), ``queue_full`` (refused with RESOURCE_EXHAUSTED at ``--max-queue-size``).
    - ``ssl_serve_queue_depth`` (gauge; ``model``): requests waiting in the model's queue.

    Args:
        model_names: Names of the repository's models (label values allowed for ``model``).
    """

    def __init__(self, model_names: Iterable[str]) -> None:
        self.registry = CollectorRegistry()
        self._models = frozenset(model_names)
        r = self.registry
        self.requests = Counter(
            "ssl_serve_requests",
            "RPCs (and streamed requests) answered, by model, method and gRPC status code",
            ["model", "method", "code"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "ssl_serve_request_duration_seconds",
            "Time from receiving a request to its answer, in seconds",
            ["model", "method"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.queue_seconds = Histogram(
            "ssl_serve_queue_seconds",
            "Time a request waited in its model's batch queue (one batch runs at a time), "
            "in seconds",
            ["model", "method"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "ssl_serve_inference_seconds",
            "Time in onnxruntime of the batch a request ran in, in seconds",
            ["model", "method"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.request_inputs = Histogram(
            "ssl_serve_request_inputs",
            "Inputs per request that reached the model",
            ["model", "method"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inputs = Counter(
            "ssl_serve_inputs", "Inputs run by a model", ["model", "method"], registry=r
        )
        self.tokens = Counter(
            "ssl_serve_tokens",
            "Tokens read by a text model (special tokens included, padding excluded)",
            ["model", "method"],
            registry=r,
        )
        self.models_loaded = Gauge(
            "ssl_serve_models_loaded", "Model versions loaded and warmed", registry=r
        )
        self.batch_size = Histogram(
            "ssl_serve_batch_size",
            "Inputs per batch the dynamic batcher ran (requests of several clients merged)",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "ssl_serve_batch_requests",
            "Requests merged into one batch by the dynamic batcher",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.dropped = Counter(
            "ssl_serve_dropped_requests",
            "Requests the batcher did not run, by reason (deadline, cancelled, queue_full)",
            ["model", "reason"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "ssl_serve_queue_depth",
            "Requests waiting in a model's batch queue",
            ["model"],
            registry=r,
        )

    def add_models(self, model_names: Iterable[str]) -> None:
        """Allow more ``model`` label values (models a hot reload added to the repository)."""
        self._models = self._models | frozenset(model_names)

    def model_label(self, name: str) -> str:
        """``name`` when the repository holds it, ``(unknown)`` otherwise ("" stays "")."""
        if not name or name in self._models:
            return name
        return UNKNOWN_MODEL

    def observe_request(
        self, method: str, model: str, code: grpc.StatusCode, duration_s: float
    ) -> None:
        """Count one answered request and its handler time.

        Args:
            method: RPC name, e.g. ``"Embed"``, ``"EmbedStream"``, ``"ModelInfer"``.
            model: The requested model name (as sent; unknown names are folded).
            code: The status the request was answered with.
            duration_s: Handler time, in seconds.
        """
        label = self.model_label(model)
        self.requests.labels(label, method, code.name).inc()
        self.request_seconds.labels(label, method).observe(duration_s)

    def observe_inference(
        self,
        method: str,
        model: str,
        *,
        queue_s: float,
        inference_s: float,
        inputs: int,
        tokens: int = 0,
    ) -> None:
        """Record one model run of a request.

        Args:
            method: RPC name.
            model: The model's name (a repository model).
            queue_s: Seconds waiting for the model.
            inference_s: Seconds in onnxruntime.
            inputs: Inputs in the request (rows of the batch).
            tokens: Tokens the model read (text models), else 0.
        """
        label = self.model_label(model)
        self.queue_seconds.labels(label, method).observe(queue_s)
        self.inference_seconds.labels(label, method).observe(inference_s)
        self.request_inputs.labels(label, method).observe(inputs)
        self.inputs.labels(label, method).inc(inputs)
        if tokens:
            self.tokens.labels(label, method).inc(tokens)

    def observe_batch(self, model: str, *, inputs: int, requests: int) -> None:
        """Record one batch the dynamic batcher ran.

        Args:
            model: The model's name (a repository model).
            inputs: Inputs (rows) in the batch, over all its requests.
            requests: Requests merged into it.
        """
        label = self.model_label(model)
        self.batch_size.labels(label).observe(inputs)
        self.batch_requests.labels(label).observe(requests)

    def observe_dropped(self, model: str, reason: str) -> None:
        """Count one request the batcher did not run.

        Args:
            model: The model's name.
            reason: ``"deadline"``, ``"cancelled"`` or ``"queue_full"``.
        """
        self.dropped.labels(self.model_label(model), reason).inc()

    def track_queue_depth(self, model: str, depth: Callable[[], float]) -> None:
        """Make ``ssl_serve_queue_depth{model}`` read ``depth()`` at every scrape."""
        self.queue_depth.labels(self.model_label(model)).set_function(depth)

    def track_models_loaded(self, count: Callable[[], float]) -> None:
        """Make ``ssl_serve_models_loaded`` read ``count()`` at every scrape."""
        self.models_loaded.set_function(count)


class MetricsEndpoint:
    """An HTTP server answering ``GET /metrics`` (any path) with the Prometheus text format.

    Args:
        metrics: The metrics to expose.
        host: Interface, e.g. "127.0.0.1" or "0.0.0.0" (IPv6 hosts work without brackets).
        port: TCP port; 0 picks a free one (see :attr:`port`).

    Raises:
        SslServeError: The address cannot be bound.
    """

    def __init__(self, metrics: ServerMetrics, host: str, port: int) -> None:
        bare_host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            self._httpd: WSGIServer
            self._httpd, self._thread = start_http_server(
                port, addr=bare_host, registry=metrics.registry
            )
        except OSError as e:
            raise SslServeError(
                f"cannot serve metrics on {host}:{port} (address in use? not a local address?): {e}"
            ) from e
        self.port: int = int(self._httpd.server_port)

    def stop(self) -> None:
        """Stop answering and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
