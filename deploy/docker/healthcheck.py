"""Container health check: one ``grpc.health.v1.Health/Check`` call, exit 0 only on SERVING.

Docker's ``HEALTHCHECK`` runs it inside the ssl-serve image (``grpc_health_probe`` is not a
Python package, so this uses ``grpcio-health-checking``, which ssl-serve already depends on).
Kubernetes does not need it: its native ``grpc:`` probe makes the same call
(``deploy/kubernetes/ssl-serve.yaml``).

Service names, as ssl-serve registers them: ``""`` (the default) is the whole server, SERVING
once every model is loaded and warmed and NOT_SERVING while draining after SIGTERM; each model
name is SERVING once that model is warmed. An unknown name answers NOT_FOUND (exit 1).

Exit codes: 0 SERVING; 1 any other status, an RPC error (connection refused, NOT_FOUND,
deadline exceeded) or a bad argument.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(address: str, service: str = "", timeout_s: float = 3.0) -> int:
    """Ask the server at ``address`` for the health of ``service``.

    Args:
        address: ``host:port`` of the gRPC server.
        service: Health service name; ``""`` is the whole server.
        timeout_s: Deadline of the call, seconds (> 0).

    Returns:
        The process exit code: 0 when the status is SERVING, else 1 (the reason is printed on
        stderr).

    Raises:
        ValueError: ``timeout_s`` is not positive.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
    with grpc.insecure_channel(address) as channel:
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
    """Command line: ``healthcheck.py [--address HOST:PORT] [--service NAME] [--timeout-s S]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--address", default="127.0.0.1:50051", help="server host:port")
    parser.add_argument("--service", default="", help='health service name ("": whole server)')
    parser.add_argument("--timeout-s", type=float, default=3.0, help="call deadline, seconds")
    args = parser.parse_args(argv)
    try:
        return check(args.address, args.service, args.timeout_s)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
