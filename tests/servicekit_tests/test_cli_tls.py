"""``serve`` over HTTPS: services as real processes with a test CA's certificate; bad settings."""

from __future__ import annotations

import socket
import ssl
import subprocess
import warnings
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from servicekit.tls import TlsSettingsError, server_certificate
from tests.support.processes import clean_environment
from tests.support.servers import (
    HOST,
    free_port,
    run_process,
    venv_command,
    wait_for_startups,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.support.tls import TestTls

pytestmark = pytest.mark.e2e

STARTUP_FAILURE = 3
EXIT_WITHIN = 60.0
PREFIXES = {
    "auth-service": "AUTH_SERVICE_",
    "user-service": "USER_SERVICE_",
    "frontend-web": "FRONTEND_WEB_",
}
SERVING = ("auth-service", "user-service")


def service_env(service: str, tmp_path: Path, **tls: Path) -> dict[str, str]:
    """No service settings but a database in ``tmp_path``, and ``tls`` (``TLS_CERT_FILE=...``)."""
    prefix = PREFIXES[service]
    extra = {f"{prefix}{name}": str(path) for name, path in tls.items()}
    if service != "frontend-web":
        extra[f"{prefix}DATABASE_URL"] = f"sqlite:///{tmp_path / 'service.db'}"
    if service == "user-service":
        # Its token for auth-service, which these tests never call: only so that it starts.
        extra["USER_SERVICE_AUTH_TOKEN"] = "unused-token-7f3a"
    return clean_environment(extra)


def tls_env(service: str, tmp_path: Path, tls: TestTls) -> dict[str, str]:
    return service_env(service, tmp_path, TLS_CERT_FILE=tls.cert_file, TLS_KEY_FILE=tls.key_file)


def serve_command(service: str, port: int, *options: str) -> list[str]:
    return [venv_command(service), "serve", "--host", HOST, "--port", str(port), *options]


@pytest.fixture
def https_service(
    request: pytest.FixtureRequest, tmp_path: Path, test_tls: TestTls
) -> Iterator[int]:
    """The service named by the test's parameter, serving HTTPS; yields its port."""
    service: str = request.param
    port = free_port()
    with run_process(
        serve_command(service, port),
        port=port,
        env=tls_env(service, tmp_path, test_tls),
        log_path=tmp_path / f"{service}.log",
    ):
        yield port


def client_context(tls: TestTls) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls.ca_file))


def raw_answer(port: int, request: bytes) -> bytes:
    """What the server sends back to ``request`` on a bare TCP connection, until it closes."""
    received = b""
    with socket.create_connection((HOST, port), timeout=10) as connection:
        connection.sendall(request)
        while chunk := connection.recv(4096):
            received += chunk
    return received


def run_serve(service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        serve_command(service, free_port()),
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=EXIT_WITHIN,
    )


@pytest.mark.parametrize("https_service", SERVING, indirect=True)
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_service_answers_over_https_verified_against_the_ca(
    https_service: int, host: str, test_tls: TestTls
) -> None:
    response = httpx.get(
        f"https://{host}:{https_service}/livez", verify=client_context(test_tls), timeout=10
    )

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize("https_service", SERVING, indirect=True)
def test_a_client_that_does_not_trust_the_ca_is_refused(https_service: int) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://{HOST}:{https_service}/livez", timeout=10)


@pytest.mark.parametrize("https_service", SERVING, indirect=True)
def test_plain_http_to_the_tls_port_gets_no_http_answer(https_service: int) -> None:
    answer = raw_answer(https_service, b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")

    assert b"HTTP/" not in answer


@pytest.mark.parametrize("https_service", ["user-service"], indirect=True)
def test_tls_older_than_1_2_is_refused(https_service: int, test_tls: TestTls) -> None:
    context = client_context(test_tls)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # lets this client offer TLS 1.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        socket.create_connection((HOST, https_service), timeout=10) as connection,
        pytest.raises(ssl.SSLError) as refused,
    ):
        context.wrap_socket(connection, server_hostname=HOST)

    # The client sent its hello (it could offer TLS 1.1); the server hung up on it.
    assert refused.value.reason != "NO_PROTOCOLS_AVAILABLE"


def test_several_workers_serve_https(tmp_path: Path, test_tls: TestTls) -> None:
    port = free_port()
    log_path = tmp_path / "user-service.log"
    with run_process(
        serve_command("user-service", port, "--workers", "2"),
        port=port,
        env=tls_env("user-service", tmp_path, test_tls),
        log_path=log_path,
    ) as supervisor:
        wait_for_startups(log_path, 2, supervisor)
        with httpx.Client(verify=client_context(test_tls), timeout=10) as client:
            statuses = {
                client.get(
                    f"https://{HOST}:{port}/livez", headers={"connection": "close"}
                ).status_code
                for _ in range(4)
            }

    assert statuses == {200}


@pytest.mark.parametrize("service", list(PREFIXES))
def test_a_missing_key_file_stops_serve_with_exit_3_naming_the_setting(
    service: str, tmp_path: Path, test_tls: TestTls
) -> None:
    missing = tmp_path / "no-such.key"
    env = service_env(service, tmp_path, TLS_CERT_FILE=test_tls.cert_file, TLS_KEY_FILE=missing)

    result = run_serve(service, env)

    assert result.returncode == STARTUP_FAILURE
    assert f"{PREFIXES[service]}TLS_KEY_FILE: cannot read {missing}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("service", SERVING)
@pytest.mark.parametrize(("given", "missing"), [("CERT", "KEY"), ("KEY", "CERT")])
def test_only_one_of_the_two_settings_stops_serve_with_exit_3(
    service: str, given: str, missing: str, tmp_path: Path, test_tls: TestTls
) -> None:
    prefix = PREFIXES[service]
    env = service_env(service, tmp_path, **{f"TLS_{given}_FILE": test_tls.cert_file})

    result = run_serve(service, env)

    assert result.returncode == STARTUP_FAILURE
    assert (
        f"{prefix}TLS_{given}_FILE is set but {prefix}TLS_{missing}_FILE is not:"
        " set both to serve HTTPS, or neither to serve plain HTTP"
    ) in result.stderr


# What server_certificate refuses, in this process: each a clear message, no traceback.


@pytest.fixture
def tls_settings(monkeypatch: pytest.MonkeyPatch, test_tls: TestTls) -> pytest.MonkeyPatch:
    """The test certificate in ``SVC_TLS_CERT_FILE`` and ``SVC_TLS_KEY_FILE``."""
    monkeypatch.setenv("SVC_TLS_CERT_FILE", str(test_tls.cert_file))
    monkeypatch.setenv("SVC_TLS_KEY_FILE", str(test_tls.key_file))
    return monkeypatch


def test_neither_setting_is_plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SVC_TLS_CERT_FILE", raising=False)
    monkeypatch.setenv("SVC_TLS_KEY_FILE", "")

    assert server_certificate("SVC_") is None


@pytest.mark.usefixtures("tls_settings")
def test_both_settings_give_uvicorn_the_files(test_tls: TestTls) -> None:
    certificate = server_certificate("SVC_")

    assert certificate is not None
    options = certificate.uvicorn_options()
    assert options["ssl_certfile"] == str(test_tls.cert_file)
    assert options["ssl_keyfile"] == str(test_tls.key_file)


def test_a_file_that_is_no_certificate_is_refused(
    tls_settings: pytest.MonkeyPatch, test_tls: TestTls
) -> None:
    tls_settings.setenv("SVC_TLS_CERT_FILE", str(test_tls.key_file))

    with pytest.raises(TlsSettingsError, match=r"^SVC_TLS_CERT_FILE: .* holds no PEM certificate$"):
        server_certificate("SVC_")


def test_a_file_that_is_no_key_is_refused(
    tls_settings: pytest.MonkeyPatch, test_tls: TestTls
) -> None:
    tls_settings.setenv("SVC_TLS_KEY_FILE", str(test_tls.cert_file))

    with pytest.raises(TlsSettingsError, match=r"^SVC_TLS_KEY_FILE: .* holds no PEM private key"):
        server_certificate("SVC_")


def test_an_expired_certificate_is_refused(
    tls_settings: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    expired = trustme.CA().issue_cert(
        HOST, not_before=now - timedelta(days=10), not_after=now - timedelta(days=1)
    )
    expired.cert_chain_pems[0].write_to_path(str(tmp_path / "expired.pem"))
    expired.private_key_pem.write_to_path(str(tmp_path / "expired.key"))
    tls_settings.setenv("SVC_TLS_CERT_FILE", str(tmp_path / "expired.pem"))
    tls_settings.setenv("SVC_TLS_KEY_FILE", str(tmp_path / "expired.key"))

    with pytest.raises(
        TlsSettingsError, match=r"^SVC_TLS_CERT_FILE: the certificate in .* expired"
    ):
        server_certificate("SVC_")


def test_a_key_of_another_certificate_is_refused(
    tls_settings: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = tmp_path / "other.key"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    tls_settings.setenv("SVC_TLS_KEY_FILE", str(other))

    with pytest.raises(
        TlsSettingsError, match=r"^SVC_TLS_KEY_FILE: the key in .* is not the key of"
    ):
        server_certificate("SVC_")


def test_an_encrypted_key_is_refused(tls_settings: pytest.MonkeyPatch, tmp_path: Path) -> None:
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase-4c1e"),
        )
    )
    tls_settings.setenv("SVC_TLS_KEY_FILE", str(encrypted))

    with pytest.raises(TlsSettingsError, match=r"^SVC_TLS_KEY_FILE: the key in .* is encrypted"):
        server_certificate("SVC_")
