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
    assert [m.name for m in service.methods] == ["Embed", "ListModels", "GetModel"]
    kinds = embedding_pb2.Input.DESCRIPTOR.oneofs_by_name["kind"].fields
    assert [f.name for f in kinds] == ["text", "image", "audio", "raw_audio", "tensor"]
