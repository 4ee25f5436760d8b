"""Container health check: one ``grpc.health.v1.Health/Check`` call, exit 0 only on SERVING.

Docker's ``HEALTHCHECK`` runs it inside the ssl-serve image (``grpc_health_probe`` is not a
Python package, so this uses ``grpcio-health-checking``, which ssl-serve already depends on).
Kubernetes does not need it: its native ``grpc:`` probe makes the same call
(``deploy/kubernetes/ssl-serve.yaml``).

Service names, as ssl-serve registers them: ``""`` (the default) is the whole server, SERVING
once every model is loaded and warmed and NOT_SERVING while draining after SIGTERM; each model
name is SERVING once that model is warmed. An unknown name answers NOT_FOUND (exit 1).

With ``ssl-serve serve --tls-cert`` the check must speak TLS: ``--tls-ca CA.pem`` (the CA that
signed the server certificate; ``--tls-server-name`` when the certificate does not name the
address), plus ``--tls-cert``/``--tls-key`` when the server requires client certificates
(``--tls-client-ca``). Health checks need no bearer token.

Exit codes: 0 SERVING; 1 any other status, an RPC error (connection refused, NOT_FOUND,
deadline exceeded) or a bad argument.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _channel(
    address: str,
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    tls_server_name: str | None,
) -> grpc.Channel:
    if tls_ca is None and tls_cert is None:
        return grpc.insecure_channel(address)
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("give both --tls-cert and --tls-key (client certificate and its key)")

    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ValueError(f"cannot read {path}: {e.strerror}") from None

    credentials = grpc.ssl_channel_credentials(read(tls_ca), read(tls_key), read(tls_cert))
    options = [("grpc.ssl_target_name_override", tls_server_name)] if tls_server_name else []
    return grpc.secure_channel(address, credentials, options=options)


def check(
    address: str,
    service: str = "",
    timeout_s: float = 3.0,
    *,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_server_name: str | None = None,
) -> int:
    """Ask the server at ``address`` for the health of ``service``.

    Args:
        address: ``host:port`` of the gRPC server.
        service: Health service name; ``""`` is the whole server.
        timeout_s: Deadline of the call, seconds (> 0).
        tls_ca: PEM file of the CA that signed the server certificate (turns TLS on).
        tls_cert: PEM client certificate, for servers that require one (mutual TLS).
        tls_key: PEM key of ``tls_cert``.
        tls_server_name: Name to check the server certificate against, when it differs from
            the host in ``address``.

    Returns:
        The process exit code: 0 when the status is SERVING, else 1 (the reason is printed on
        stderr).

    Raises:
        ValueError: ``timeout_s`` is not positive, only one of ``tls_cert``/``tls_key`` is
            given, or a TLS file cannot be read.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
    with _channel(address, tls_ca, tls_cert, tls_key, tls_server_name) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as e:
            code = e.code() if isinstance(e, grpc.Call) else None
            print(f"health check of {service!r} at {address} failed: {code}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"service {service!r} at {address} is {status}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``healthcheck.py [--address HOST:PORT] [--service NAME] [--timeout-s S]
    [--tls-ca CA.pem [--tls-cert C.pem --tls-key K.pem] [--tls-server-name NAME]]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--address", default="127.0.0.1:50051", help="server host:port")
    parser.add_argument("--service", default="", help='health service name ("": whole server)')
    parser.add_argument("--timeout-s", type=float, default=3.0, help="call deadline, seconds")
    parser.add_argument("--tls-ca", help="PEM CA of the server certificate (turns TLS on)")
    parser.add_argument("--tls-cert", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--tls-key", help="PEM key of --tls-cert")
    parser.add_argument("--tls-server-name", help="name the server certificate is checked against")
    args = parser.parse_args(argv)
    try:
        return check(args.address, args.service, args.timeout_s, tls_ca=args.tls_ca,
                     tls_cert=args.tls_cert, tls_key=args.tls_key,
                     tls_server_name=args.tls_server_name)  # fmt: skip
    except ValueError as e:
        print(e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
