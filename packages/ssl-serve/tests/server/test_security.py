"""TLS, mutual TLS and bearer tokens on real server processes (torch blocked).

The test makes a throwaway CA, a server certificate for localhost/127.0.0.1 and client
certificates (one from another CA) with the `cryptography` package, starts servers with them and
checks what each kind of client gets.
"""

from __future__ import annotations

import datetime
import ipaddress
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from serve_helpers import (
    MODEL_NAME,
    ServerProcess,
    png_bytes,
    reference_preprocess,
    start_server,
    stop_server,
)
from tritonclient.utils import InferenceServerException

from ssl_serve.cli import main
from ssl_serve.client import EmbeddingClient
from ssl_serve.errors import RemoteError, SslServeError
from ssl_serve.server import EmbeddingServer, ServerConfig
from ssl_serve.server.security import BearerTokenInterceptor, read_token_file
from ssl_serve.v1 import embedding_pb2, embedding_pb2_grpc

TOKENS = ("old-token-7f3a", "new-token-91bc")


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path
    rogue_cert: Path
    rogue_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    """A CA certificate (``issuer`` None: self-signed) or a leaf signed by ``issuer``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(subject) if issuer is None else issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    signer = key if issuer is None else issuer[1]
    return builder.sign(signer, hashes.SHA256())


def _write(folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey):
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, rogue_key = _key(), _key()
    ca = _certificate("ssl-serve test CA", ca_key, None)
    rogue = _certificate("some other CA", rogue_key, None)
    server_key, client_key, intruder_key = _key(), _key(), _key()
    server = _certificate(
        "localhost", server_key, (ca, ca_key), usage=ExtendedKeyUsageOID.SERVER_AUTH
    )
    client = _certificate("client", client_key, (ca, ca_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    intruder = _certificate(
        "intruder", intruder_key, (rogue, rogue_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    ca_path, _ = _write(folder, "ca", ca, ca_key)
    rogue_path, _ = _write(folder, "rogue-ca", rogue, rogue_key)
    return Pki(
        ca_path,
        *_write(folder, "server", server, server_key),
        *_write(folder, "client", client, client_key),
        rogue_path,
        *_write(folder, "intruder", intruder, intruder_key),
    )


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("token") / "tokens"
    path.write_text(f"# accepted while clients move to the new token\n{TOKENS[0]}\n\n{TOKENS[1]}\n")
    return path


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, repository: Path, pki: Pki, token_file: Path
) -> Iterator[ServerProcess]:
    """TLS (no client certificates) and bearer tokens."""
    args = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    args += ["--token-file", str(token_file)]
    log = tmp_path_factory.mktemp("tls") / "server.log"
    srv = start_server(repository, log, metrics=True, args=args)
    yield srv
    if srv.proc.poll() is None:
        assert stop_server(srv) == 0, srv.log.read_text()


@pytest.fixture(scope="module")
def mtls_server(
    tmp_path_factory: pytest.TempPathFactory, repository: Path, pki: Pki
) -> Iterator[ServerProcess]:
    """Mutual TLS: client certificates signed by the test CA required; no token."""
    args = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    args += ["--tls-client-ca", str(pki.ca)]
    srv = start_server(repository, tmp_path_factory.mktemp("mtls") / "server.log", args=args)
    yield srv
    if srv.proc.poll() is None:
        assert stop_server(srv) == 0, srv.log.read_text()


@pytest.fixture(scope="module")
def images(fashion_test_images: np.ndarray) -> list[bytes]:
    return [png_bytes(img) for img in fashion_test_images[:3]]


def _localhost(server: ServerProcess) -> str:
    return f"localhost:{server.address.rsplit(':', 1)[1]}"


def _code(client: EmbeddingClient, images: list[bytes]) -> grpc.StatusCode:
    with pytest.raises(RemoteError) as info:
        client.embed_images(MODEL_NAME, images)
    return info.value.code


def test_tls_with_token_equals_plaintext_server(
    tls_server: ServerProcess, server: ServerProcess, pki: Pki, images: list[bytes]
) -> None:
    with EmbeddingClient(server.address, timeout_s=20) as plain:
        expected = plain.embed_images(MODEL_NAME, images)
    for target in (tls_server.address, _localhost(tls_server)):  # the certificate names both
        for token in TOKENS:  # either line of the token file
            with EmbeddingClient(target, timeout_s=20, tls_ca=pki.ca, token=token) as client:
                client.wait_until_serving(timeout_s=30)
                np.testing.assert_allclose(
                    client.embed_images(MODEL_NAME, images), expected, atol=1e-6
                )
                assert [m.name for m in client.list_models()] == [MODEL_NAME]
                stream = [
                    embedding_pb2.EmbedRequest(
                        model_name=MODEL_NAME, inputs=[embedding_pb2.Input(image=images[0])]
                    )
                ]
                ((emb, _),) = list(client.embed_stream(stream, timeout_s=20))
                np.testing.assert_allclose(emb, expected[:1], atol=1e-6)


def test_plaintext_and_unknown_ca_clients_are_unavailable(
    tls_server: ServerProcess, pki: Pki, images: list[bytes]
) -> None:
    with EmbeddingClient(tls_server.address, timeout_s=10, token=TOKENS[0]) as plain:
        assert _code(plain, images) == grpc.StatusCode.UNAVAILABLE
    with EmbeddingClient(
        tls_server.address, timeout_s=10, tls_ca=pki.rogue_ca, token=TOKENS[0]
    ) as wrong_ca:
        assert _code(wrong_ca, images) == grpc.StatusCode.UNAVAILABLE


def test_missing_or_wrong_token_is_unauthenticated_but_health_is_open(
    tls_server: ServerProcess, pki: Pki, images: list[bytes]
) -> None:
    with EmbeddingClient(tls_server.address, timeout_s=10, tls_ca=pki.ca) as anonymous:
        anonymous.wait_until_serving(timeout_s=30)  # grpc.health.v1 needs no token
        anonymous.wait_until_serving(timeout_s=10, model=MODEL_NAME)
        with pytest.raises(RemoteError) as missing:
            anonymous.embed_images(MODEL_NAME, images)
        assert missing.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert missing.value.details.startswith("missing bearer token")
        with pytest.raises(RemoteError) as listing:
            anonymous.list_models()
        assert listing.value.code == grpc.StatusCode.UNAUTHENTICATED
        stream = [embedding_pb2.EmbedRequest(model_name=MODEL_NAME)]
        with pytest.raises(RemoteError) as streamed:
            list(anonymous.embed_stream(stream, timeout_s=10))
        assert streamed.value.code == grpc.StatusCode.UNAUTHENTICATED
    with EmbeddingClient(tls_server.address, timeout_s=10, tls_ca=pki.ca, token="wrong") as bad:
        with pytest.raises(RemoteError) as wrong:
            bad.embed_images(MODEL_NAME, images)
        assert wrong.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert wrong.value.details == "invalid bearer token"
    # A raw health stub without any metadata, as a Kubernetes gRPC probe sends it.
    credentials = grpc.ssl_channel_credentials(pki.ca.read_bytes())
    with grpc.secure_channel(tls_server.address, credentials) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as scheme:
            embedding_pb2_grpc.EmbeddingServiceStub(channel).ListModels(
                embedding_pb2.ListModelsRequest(),
                metadata=[("authorization", f"Basic {TOKENS[0]}")],
                timeout=10,
            )
        assert scheme.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert scheme.value.details() == "authorization metadata must be 'Bearer <token>'"
    assert tls_server.metrics_url is not None
    with urllib.request.urlopen(tls_server.metrics_url, timeout=10) as response:
        families = text_string_to_metric_families(response.read().decode())
        refused = sum(
            s.value
            for f in families
            for s in f.samples
            if s.name == "ssl_serve_requests_total" and s.labels["code"] == "UNAUTHENTICATED"
        )
    assert refused >= 5


def test_tritonclient_over_tls_with_a_bearer_header(
    tls_server: ServerProcess, pki: Pki, server: ServerProcess, fashion_test_images: np.ndarray
) -> None:
    x = reference_preprocess(fashion_test_images[:4])
    item = triton.InferInput("pixel_values", list(x.shape), "FP32")
    item.set_data_from_numpy(x)
    plain = triton.InferenceServerClient(server.address)
    expected = plain.infer(MODEL_NAME, [item]).as_numpy("embedding")
    plain.close()
    client = triton.InferenceServerClient(
        tls_server.address, ssl=True, root_certificates=str(pki.ca)
    )
    try:
        header = {"authorization": f"Bearer {TOKENS[0]}"}
        served = client.infer(MODEL_NAME, [item], headers=header).as_numpy("embedding")
        np.testing.assert_allclose(served, expected, atol=1e-6)
        assert client.is_server_ready(headers=header) is True
        with pytest.raises(InferenceServerException) as info:
            client.infer(MODEL_NAME, [item])
        assert str(info.value.status()) == "StatusCode.UNAUTHENTICATED"
    finally:
        client.close()


def test_client_commands_take_tls_and_token_options(
    tls_server: ServerProcess,
    pki: Pki,
    token_file: Path,
    tmp_path: Path,
    images: list[bytes],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tls = ["--target", tls_server.address, "--tls-ca", str(pki.ca)]
    assert main(["models", *tls, "--token-file", str(token_file)]) == 0
    assert MODEL_NAME in capsys.readouterr().out
    monkeypatch.setenv("SSL_SERVE_TOKEN", TOKENS[1])
    files = []
    for i, data in enumerate(images):
        files.append(tmp_path / f"{i}.png")
        files[-1].write_bytes(data)
    out = tmp_path / "emb.npy"
    assert main(["embed", *tls, "--model", MODEL_NAME, "--output", str(out), *map(str, files)]) == 0
    with EmbeddingClient(tls_server.address, tls_ca=pki.ca, token=TOKENS[1]) as client:
        np.testing.assert_array_equal(np.load(out), client.embed_images(MODEL_NAME, images))
    monkeypatch.delenv("SSL_SERVE_TOKEN")
    assert main(["models", *tls]) == 1
    assert "UNAUTHENTICATED: missing bearer token" in capsys.readouterr().err


def test_mutual_tls_requires_a_client_certificate_from_the_ca(
    mtls_server: ServerProcess, pki: Pki, images: list[bytes]
) -> None:
    with EmbeddingClient(
        mtls_server.address,
        timeout_s=20,
        tls_ca=pki.ca,
        tls_cert=pki.client_cert,
        tls_key=pki.client_key,
    ) as client:
        client.wait_until_serving(timeout_s=30)
        assert client.embed_images(MODEL_NAME, images).shape == (3, 128)
    with EmbeddingClient(mtls_server.address, timeout_s=10, tls_ca=pki.ca) as no_cert:
        assert _code(no_cert, images) == grpc.StatusCode.UNAVAILABLE
    with EmbeddingClient(
        mtls_server.address,
        timeout_s=10,
        tls_ca=pki.ca,
        tls_cert=pki.rogue_cert,
        tls_key=pki.rogue_key,
    ) as intruder:
        assert _code(intruder, images) == grpc.StatusCode.UNAVAILABLE
    with EmbeddingClient(mtls_server.address, timeout_s=10) as plain:
        assert _code(plain, images) == grpc.StatusCode.UNAVAILABLE


def test_tls_options_are_checked_at_start(repository: Path, pki: Pki, tmp_path: Path) -> None:
    def refusal(**kwargs: object) -> str:
        with pytest.raises(SslServeError) as info:
            EmbeddingServer(ServerConfig(repository, port=0, **kwargs))  # type: ignore[arg-type]
        return str(info.value)

    assert "--tls-cert and --tls-key go together" in refusal(tls_cert=pki.server_cert)
    assert "needs TLS" in refusal(tls_client_ca=pki.ca)
    not_pem = tmp_path / "cert.der"
    not_pem.write_bytes(b"\x30\x82 binary")
    assert f"{not_pem} is not a PEM file" in refusal(tls_cert=not_pem, tls_key=pki.server_key)
    missing = tmp_path / "missing.key"
    assert f"cannot read the TLS private key (--tls-key) {missing}" in refusal(
        tls_cert=pki.server_cert, tls_key=missing
    )


def test_token_rules(tmp_path: Path) -> None:
    with pytest.raises(SslServeError, match="visible ASCII"):
        BearerTokenInterceptor(["has space"])
    with pytest.raises(SslServeError, match="at least one token"):
        BearerTokenInterceptor([])
    empty = tmp_path / "empty"
    empty.write_text("# only a comment\n\n")
    with pytest.raises(SslServeError, match="holds no token"):
        read_token_file(empty)
    with pytest.raises(ValueError, match="visible ASCII"):
        EmbeddingClient("127.0.0.1:1", token="two words")
    with pytest.raises(ValueError, match="go together"):
        EmbeddingClient("127.0.0.1:1", tls_cert=b"x")
