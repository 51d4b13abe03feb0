"""user-service's settings for auth-service: its client token, its CA file, the plaintext rule."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from pydantic import ValidationError

from servicekit.upstream import MissingClientTokenError
from tests.support.log_scan import register_secret
from tests.support.servers import serve_in_thread
from tests.user_service.client_headers import caller_headers
from tests.user_service.stub_verifier import RecordingVerifier
from user_service.accounts import InMemoryAccountStore
from user_service.factory import create_app
from user_service.settings import Settings

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.tls import TestTls
    from tests.user_service.stand_in_auth import StandInAuthService

TOKEN = register_secret("tok-user-service-0d8f3a")
CALLER_VARIABLES = (
    "USER_SERVICE_AUTH_TOKEN",
    "USER_SERVICE_AUTH_TOKEN_FILE",
    "USER_SERVICE_AUTH_CA_FILE",
    "USER_SERVICE_AUTH_ALLOW_PLAINTEXT",
)


@pytest.fixture(autouse=True)
def no_token_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without a token, a CA file or the plaintext switch in the environment."""
    for name in CALLER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def token_file(folder: Path, content: str) -> Path:
    path = folder / "auth-token"
    path.write_text(content, encoding="utf-8")
    return path


def refusal(error: ValidationError) -> tuple[tuple[str | int, ...], str]:
    """The one refused setting and the message, as ``serve`` logs them."""
    [problem] = error.errors(include_input=False, include_url=False)
    return problem["loc"], problem["msg"]


def test_the_token_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER_SERVICE_AUTH_TOKEN", f" {TOKEN}\n")

    token = Settings().auth_client_token

    assert token is not None
    assert token.get_secret_value() == TOKEN


def test_the_token_is_read_from_the_file_stripped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("USER_SERVICE_AUTH_TOKEN_FILE", str(token_file(tmp_path, f"{TOKEN}\n")))

    token = Settings().auth_client_token

    assert token is not None
    assert token.get_secret_value() == TOKEN


def test_an_empty_token_variable_counts_as_unset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("USER_SERVICE_AUTH_TOKEN", "")
    monkeypatch.setenv("USER_SERVICE_AUTH_TOKEN_FILE", str(token_file(tmp_path, TOKEN)))

    token = Settings().auth_client_token

    assert token is not None
    assert token.get_secret_value() == TOKEN


def test_no_token_at_all_is_none() -> None:
    assert Settings().auth_client_token is None


def test_both_token_settings_are_refused_naming_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("USER_SERVICE_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("USER_SERVICE_AUTH_TOKEN_FILE", str(token_file(tmp_path, TOKEN)))

    with pytest.raises(ValidationError) as caught:
        Settings()

    loc, message = refusal(caught.value)
    assert loc == ("auth_token_file",)
    assert "USER_SERVICE_AUTH_TOKEN_FILE and USER_SERVICE_AUTH_TOKEN are both set" in message
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(" \n", "is empty"), (None, "cannot read the token file"), ("a b", "visible ASCII")],
    ids=["empty", "missing", "two-words"],
)
def test_a_token_file_that_holds_no_token_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "missing" if content is None else token_file(tmp_path, content)
    monkeypatch.setenv("USER_SERVICE_AUTH_TOKEN_FILE", str(path))

    with pytest.raises(ValidationError) as caught:
        Settings()

    loc, message = refusal(caught.value)
    assert loc == ("auth_token_file",)
    assert "USER_SERVICE_AUTH_TOKEN_FILE" in message
    assert reason in message


def test_the_token_is_in_no_repr_and_no_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER_SERVICE_AUTH_TOKEN", TOKEN)
    settings = Settings()

    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings)
    assert TOKEN not in settings.model_dump_json()


def test_the_production_client_is_not_built_without_a_token() -> None:
    with pytest.raises(MissingClientTokenError) as caught:
        create_app(Settings(), account_store=InMemoryAccountStore())

    assert "USER_SERVICE_AUTH_TOKEN_FILE or USER_SERVICE_AUTH_TOKEN" in str(caught.value)


def test_an_app_with_its_own_verifier_needs_no_token() -> None:
    app = create_app(
        Settings(),
        auth_verifier=RecordingVerifier(valid=True),
        account_store=InMemoryAccountStore(),
    )

    assert app.title == "user-service"


def test_the_token_of_the_file_reaches_auth_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stand_in_auth: StandInAuthService
) -> None:
    monkeypatch.setenv("USER_SERVICE_AUTH_URL", stand_in_auth.base_url)
    monkeypatch.setenv("USER_SERVICE_AUTH_TOKEN_FILE", str(token_file(tmp_path, f"{TOKEN}\n")))
    store = InMemoryAccountStore()
    headers = caller_headers(store)

    with serve_in_thread(create_app(account_store=store)) as base_url:
        response = httpx.post(
            f"{base_url}/accounts",
            json={"username": "alice", "password": "correct horse battery staple"},
            headers=headers,
        )

    assert response.status_code == 201
    assert [request.authorization for request in stand_in_auth.received] == [f"Bearer {TOKEN}"]


def test_a_ca_file_of_pem_certificates_is_accepted(
    monkeypatch: pytest.MonkeyPatch, test_tls: TestTls
) -> None:
    monkeypatch.setenv("USER_SERVICE_AUTH_CA_FILE", str(test_tls.ca_file))

    assert Settings().auth_ca_file == test_tls.ca_file


def test_an_empty_ca_file_variable_means_the_system_trust_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USER_SERVICE_AUTH_CA_FILE", "")

    assert Settings().auth_ca_file is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [("missing.pem", "cannot read"), ("text.pem", "holds no PEM certificate")],
)
def test_a_ca_file_that_is_not_readable_pem_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, reason: str
) -> None:
    (tmp_path / "text.pem").write_text("not a certificate\n")
    monkeypatch.setenv("USER_SERVICE_AUTH_CA_FILE", str(tmp_path / name))

    with pytest.raises(ValidationError) as caught:
        Settings()

    loc, message = refusal(caught.value)
    assert loc == ("auth_ca_file",)
    assert "USER_SERVICE_AUTH_CA_FILE" in message
    assert reason in message


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8001",
        "http://127.3.2.1:8001",
        "http://localhost:8001",
        "http://[::1]:8001",
        "https://auth.internal:8443",
    ],
)
def test_https_or_plain_http_to_a_loopback_host_is_accepted(url: str) -> None:
    assert Settings(auth_url=url).auth_url == url


@pytest.mark.parametrize("url", ["http://auth.internal:8001", "http://10.0.0.7:8001"])
def test_plain_http_to_another_host_is_refused_saying_why_and_naming_the_setting(
    url: str,
) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(auth_url=url)

    loc, message = refusal(caught.value)
    assert loc == ("auth_url",)
    assert "not a loopback host" in message
    assert "USER_SERVICE_AUTH_ALLOW_PLAINTEXT=true" in message


def test_plain_http_to_another_host_is_accepted_when_plaintext_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USER_SERVICE_AUTH_URL", "http://auth.mesh:8001")
    monkeypatch.setenv("USER_SERVICE_AUTH_ALLOW_PLAINTEXT", "true")

    assert Settings().auth_url == "http://auth.mesh:8001"
