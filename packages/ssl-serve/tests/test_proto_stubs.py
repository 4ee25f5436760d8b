"""The committed gRPC stubs are exactly what scripts/gen_proto.py makes from proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from serve_helpers import ROOT

STUBS = ("embedding_pb2.py", "embedding_pb2.pyi", "embedding_pb2_grpc.py")
PACKAGE_STUBS = ROOT / "packages" / "ssl-serve" / "src" / "ssl_serve" / "v1"


def test_committed_stubs_match_proto_sources(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "scripts/gen_proto.py", "--out", str(tmp_path)], cwd=ROOT, check=True
    )
    for name in STUBS:
        generated = (tmp_path / "ssl_serve" / "v1" / name).read_bytes()
        committed = (PACKAGE_STUBS / name).read_bytes()
        assert generated == committed, f"{name} is stale: run `hatch run proto`"


def test_stubs_describe_the_proto_service() -> None:
    from ssl_serve.v1 import embedding_pb2

    service = embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"]
    assert service.full_name == "ssl_serve.v1.EmbeddingService"
    assert [m.name for m in service.methods] == [
        "Embed",
        "EmbedStream",
        "Classify",
        "ListModels",
        "GetModel",
    ]
    stream = service.methods_by_name["EmbedStream"]
    assert stream.client_streaming and stream.server_streaming
    assert not service.methods_by_name["Embed"].client_streaming
    assert stream.input_type.name == "EmbedRequest" and stream.output_type.name == "EmbedResponse"
    error = embedding_pb2.EmbedResponse.DESCRIPTOR.fields_by_name["error"]
    assert (error.number, error.message_type.name) == (9, "Error")
    kinds = embedding_pb2.Input.DESCRIPTOR.oneofs_by_name["kind"].fields
    assert [f.name for f in kinds] == ["text", "image", "audio", "raw_audio", "tensor"]


KSERVE_PROTO = "ssl_serve/kserve/grpc_service.proto"
KSERVE_STUBS = ("grpc_service_pb2.py", "grpc_service_pb2.pyi", "grpc_service_pb2_grpc.py")
# Prints the serialized FileDescriptorProto of our KServe stubs. A subprocess: importing them
# here would register the protobuf package `inference`, which tritonclient's stubs register too.
DUMP_KSERVE = (
    "import sys; from ssl_serve.kserve import grpc_service_pb2 as pb; "
    "sys.stdout.buffer.write(pb.DESCRIPTOR.serialized_pb)"
)


def test_committed_kserve_stubs_match_proto_source(tmp_path: Path) -> None:
    # The command of scripts/gen_proto.py, for the KServe v2 proto.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            "proto",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"proto/{KSERVE_PROTO}",
        ],
        cwd=ROOT,
        check=True,
    )
    for name in KSERVE_STUBS:
        generated = (tmp_path / "ssl_serve" / "kserve" / name).read_bytes()
        committed = (PACKAGE_STUBS.parent / "kserve" / name).read_bytes()
        assert generated == committed, f"{name} is stale: regenerate it from {KSERVE_PROTO}"


def test_kserve_messages_are_tritonclients_on_the_wire() -> None:
    from google.protobuf import descriptor_pb2
    from tritonclient.grpc import service_pb2

    out = subprocess.run([sys.executable, "-c", DUMP_KSERVE], capture_output=True, check=True)
    ours = descriptor_pb2.FileDescriptorProto.FromString(out.stdout)
    theirs = descriptor_pb2.FileDescriptorProto()
    service_pb2.DESCRIPTOR.CopyToProto(theirs)
    assert ours.package == theirs.package == "inference"
    their_messages = {m.name: m for m in theirs.message_type}
    assert len(ours.message_type) == 14
    for message in ours.message_type:  # names, numbers, types and nesting, field by field
        assert message == their_messages[message.name], message.name
    (service,) = ours.service
    (their_service,) = theirs.service
    their_methods = {m.name: m for m in their_service.method}
    assert [m.name for m in service.method] == [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    ]
    for method in service.method:
        assert method == their_methods[method.name]
