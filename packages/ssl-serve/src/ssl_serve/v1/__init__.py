"""Generated gRPC stubs of proto/ssl_serve/v1/embedding.proto (scripts/gen_proto.py; not edited)."""
