"""Transport security and authentication: TLS / mutual TLS from PEM files, bearer tokens.

TLS (``--tls-cert``/``--tls-key``) encrypts every call and proves the server's identity;
``--tls-client-ca`` makes it mutual: the handshake fails for a client without a certificate
signed by that CA. Bearer tokens (``--token`` / ``--token-file``) are checked on every RPC by
:class:`BearerTokenInterceptor` (metadata ``authorization: Bearer <token>``), except
``grpc.health.v1.Health``, which stays open so load balancers and Kubernetes' gRPC probes, which
send no token, keep working (it reveals only SERVING / NOT_SERVING).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import grpc

from ssl_serve.errors import SslServeError, UnauthenticatedError, grpc_status_code
from ssl_serve.server.metrics import ServerMetrics

log = logging.getLogger(__name__)

AUTHORIZATION = "authorization"
BEARER = "bearer"
# RPCs answered without a token: grpc.health.v1 (Check and Watch) for probes.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)


def _read_pem(path: Path, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SslServeError(f"cannot read the {what} {path}: {e.strerror or e}") from e
    if b"-----BEGIN " not in data:
        raise SslServeError(f"{path} is not a PEM file (no '-----BEGIN ' line); the {what} is")
    return data


def server_credentials(
    cert: Path, key: Path, client_ca: Path | None = None
) -> grpc.ServerCredentials:
    """TLS credentials of the server from PEM files.

    Args:
        cert: The server's certificate chain, PEM (leaf first); its subject alternative names
            must include the host name (or IP address) clients connect to.
        key: The certificate's private key, PEM, unencrypted.
        client_ca: CA certificate(s), PEM; when given, clients must present a certificate
            signed by one of them (mutual TLS), else the handshake fails.

    Returns:
        Credentials for ``grpc.Server.add_secure_port``.

    Raises:
        SslServeError: A file cannot be read or is not PEM.
    """
    chain = _read_pem(cert, "TLS certificate (--tls-cert)")
    private_key = _read_pem(key, "TLS private key (--tls-key)")
    roots = None if client_ca is None else _read_pem(client_ca, "client CA (--tls-client-ca)")
    return grpc.ssl_server_credentials(
        [(private_key, chain)], root_certificates=roots, require_client_auth=roots is not None
    )


def check_token(token: str) -> str:
    """``token`` if it can travel in a gRPC header: 1+ visible ASCII characters, no spaces.

    Raises:
        SslServeError: It is empty or holds other characters (the message does not show it).
    """
    if not token or not all("!" <= c <= "~" for c in token):
        raise SslServeError(
            f"a bearer token must be 1 or more visible ASCII characters without spaces "
            f"(got {len(token)} characters)"
        )
    return token


def read_token_file(path: Path) -> tuple[str, ...]:
    """The tokens of a token file: one per line; blank lines and ``#`` comments are skipped.

    Several lines let a server accept an old and a new token while clients move over.

    Raises:
        SslServeError: The file cannot be read, holds no token, or a token is malformed.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SslServeError(f"cannot read the token file {path}: {e}") from e
    tokens = tuple(
        check_token(line.strip()) for line in lines if line.strip() and not line.startswith("#")
    )
    if not tokens:
        raise SslServeError(f"token file {path} holds no token (one token per line)")
    return tokens


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Refuse, with UNAUTHENTICATED, every RPC whose metadata lacks a valid bearer token.

    The client sends metadata ``authorization: Bearer <token>`` (``EmbeddingClient(token=...)``,
    tritonclient's ``headers={"authorization": "Bearer <token>"}``, grpcurl's ``-H``). Tokens are
    compared in constant time. grpc.health.v1 needs no token.

    Args:
        tokens: The accepted tokens (one or more).
        metrics: Where refused calls are counted (``ssl_serve_requests_total`` with code
            ``UNAUTHENTICATED`` and an empty model); None counts nothing.

    Raises:
        SslServeError: ``tokens`` is empty or holds a malformed token.
    """

    def __init__(self, tokens: Iterable[str], *, metrics: ServerMetrics | None = None) -> None:
        self._tokens = tuple(check_token(t).encode("ascii") for t in tokens)
        if not self._tokens:
            raise SslServeError("BearerTokenInterceptor needs at least one token")
        self.metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """Pass the call on when it is open or carries a valid token, else refuse it."""
        method: str = handler_call_details.method
        if method.startswith(OPEN_METHOD_PREFIXES):
            return continuation(handler_call_details)
        problem = self._problem(handler_call_details.invocation_metadata or ())
        if problem is None:
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:  # an unknown method stays UNIMPLEMENTED
            return None
        name = method.rsplit("/", 1)[-1]
        error = UnauthenticatedError(problem)
        log.info("%s -> %s: %s", name, grpc_status_code(error).name, error)
        if self.metrics is not None:
            self.metrics.observe_request(name, "", grpc_status_code(error), 0.0)
        return _refusal(handler, error)

    def _problem(self, metadata: Iterable[tuple[str, Any]]) -> str | None:
        """Why the metadata does not authenticate the call; None when it does."""
        values = [v for k, v in metadata if k == AUTHORIZATION]
        if not values:
            return (
                "missing bearer token: this server requires metadata 'authorization: Bearer "
                "<token>' on every call (EmbeddingClient(token=...), ssl-serve embed --token)"
            )
        value = values[0].decode("latin-1") if isinstance(values[0], bytes) else str(values[0])
        scheme, _, given = value.strip().partition(" ")
        if scheme.lower() != BEARER or not given.strip():
            return "authorization metadata must be 'Bearer <token>'"
        supplied = given.strip().encode("utf-8", "replace")
        if not any([hmac.compare_digest(supplied, t) for t in self._tokens]):
            return "invalid bearer token"
        return None


def _refusal(handler: grpc.RpcMethodHandler, error: SslServeError) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that aborts with ``error``'s status."""

    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc_status_code(error), str(error))

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse, **kwargs)
    return grpc.unary_unary_rpc_method_handler(refuse, **kwargs)
