"""Generate the Python gRPC stubs of ssl-serve from the `.proto` sources under `proto/`.

Usage (from the repository root)::

    python scripts/gen_proto.py               # writes into packages/ssl-serve/src
    python scripts/gen_proto.py --out /tmp/x  # writes into /tmp/x (tests compare the two)

The stubs land at `<out>/ssl_serve/v1/embedding_pb2{.py,.pyi,_grpc.py}`, so their
`from ssl_serve.v1 import ...` imports resolve inside the installed package. They must be made
with a grpcio-tools whose bundled protobuf is < 7 (constraints.txt pins it), because generated
code only runs on the protobuf major that made it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
DEFAULT_OUT = ROOT / "packages" / "ssl-serve" / "src"
PROTO_FILES = ("ssl_serve/v1/embedding.proto", "ssl_serve/kserve/grpc_service.proto")


def generate(out: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) on every proto source of ssl-serve.

    Args:
        out: Folder that receives the `ssl_serve/v1/...` stubs; created when missing.

    Returns:
        The generated files, sorted.

    Raises:
        FileNotFoundError: A proto source listed in `PROTO_FILES` is missing.
        subprocess.CalledProcessError: protoc failed (its message is on stderr).
    """
    for name in PROTO_FILES:
        if not (PROTO_ROOT / name).is_file():
            raise FileNotFoundError(f"proto source {PROTO_ROOT / name} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    # Relative proto paths keep absolute folders of this machine out of the generated code.
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        "proto",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *(f"proto/{name}" for name in PROTO_FILES),
    ]
    subprocess.run(cmd, cwd=ROOT, check=True)
    generated = []
    for name in PROTO_FILES:
        stem = out / name.removesuffix(".proto")
        generated += [
            stem.with_name(stem.name + s) for s in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
        ]
    return sorted(generated)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output folder for the ssl_serve/v1 stubs (default: {DEFAULT_OUT.relative_to(ROOT)})",
    )
    args = parser.parse_args(argv)
    for path in generate(args.out.resolve()):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
