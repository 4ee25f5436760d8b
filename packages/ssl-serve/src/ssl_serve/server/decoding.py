"""Undecodable request messages answered INVALID_ARGUMENT instead of gRPC's INTERNAL.

grpcio parses every request with the method's protobuf deserializer before a handler runs; a
message that does not parse (truncated bytes, a wrong wire type, invalid UTF-8 in a ``string``
field such as ``Input.text``) makes grpcio itself answer INTERNAL ("Exception deserializing
request!"), which reads as a server fault and invites retries. :class:`RequestDecodingInterceptor`
wraps each method's deserializer so a parse error becomes a marker the handler turns into
INVALID_ARGUMENT naming the message type and protobuf's reason; it applies to every service of
the server (ssl_serve.v1, KServe v2, health, reflection), unary and streaming.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc


class _Undecodable:
    """Stands in for a request message protobuf could not parse."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _safe(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as e:  # protobuf's DecodeError, or a UnicodeDecodeError from it
            return _Undecodable(e)

    return parse


def _abort(context: grpc.ServicerContext, method: str, bad: _Undecodable) -> None:
    context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the request message of {method} cannot be parsed as protobuf ({bad.error}); is it "
        "built from this server's proto files (strings must be valid UTF-8)?",
    )


def _checked(requests: Iterator[Any], context: grpc.ServicerContext, method: str) -> Iterator[Any]:
    for request in requests:
        if isinstance(request, _Undecodable):
            _abort(context, method, request)
        yield request


class RequestDecodingInterceptor(grpc.ServerInterceptor):
    """Answer requests that do not parse with INVALID_ARGUMENT (see the module docstring)."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        deserializer = _safe(handler.request_deserializer)
        serializer = handler.response_serializer
        if handler.unary_unary is not None:
            unary_unary = handler.unary_unary

            def uu(request: Any, context: grpc.ServicerContext) -> Any:
                if isinstance(request, _Undecodable):
                    _abort(context, method, request)
                return unary_unary(request, context)

            return grpc.unary_unary_rpc_method_handler(uu, deserializer, serializer)
        if handler.unary_stream is not None:
            unary_stream = handler.unary_stream

            def us(request: Any, context: grpc.ServicerContext) -> Any:
                if isinstance(request, _Undecodable):
                    _abort(context, method, request)
                return unary_stream(request, context)

            return grpc.unary_stream_rpc_method_handler(us, deserializer, serializer)
        if handler.stream_unary is not None:
            stream_unary = handler.stream_unary

            def su(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                return stream_unary(_checked(requests, context, method), context)

            return grpc.stream_unary_rpc_method_handler(su, deserializer, serializer)
        stream_stream = handler.stream_stream
        assert stream_stream is not None

        def ss(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            return stream_stream(_checked(requests, context, method), context)

        return grpc.stream_stream_rpc_method_handler(ss, deserializer, serializer)
