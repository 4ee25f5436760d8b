"""Generated gRPC stubs of proto/ssl_serve/kserve/grpc_service.proto (KServe v2, package `inference`; not edited).

Importing them registers the protobuf package `inference`, as tritonclient's stubs do: the two
cannot share one Python process. Only :mod:`ssl_serve.server.kserve` imports them.
"""
