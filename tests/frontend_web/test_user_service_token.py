"""frontend-web's settings for user-service: its client token, its CA file, the plaintext rule."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from frontend_web.client import FrontendClient
from frontend_web.factory import create_app
from frontend_web.settings import Settings
from servicekit.upstream import MissingClientTokenError
from tests.frontend_web.conftest import UNREACHED_RATE_LIMIT, FormBrowser
from tests.frontend_web.html import parse
from tests.frontend_web.stand_in_user_service import StandInUserService, created, running_stand_in
from tests.support.log_scan import register_secret
from tests.support.servers import serve_in_thread
from tests.support.tls import make_tls

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.support.tls import TestTls

TOKEN = register_secret("tok-frontend-web-9a3c57")
CALLER_VARIABLES = (
    "FRONTEND_WEB_USER_SERVICE_URL",
    "FRONTEND_WEB_USER_SERVICE_TOKEN",
    "FRONTEND_WEB_USER_SERVICE_TOKEN_FILE",
    "FRONTEND_WEB_USER_SERVICE_CA_FILE",
    "FRONTEND_WEB_USER_SERVICE_ALLOW_PLAINTEXT",
)


@pytest.fixture(autouse=True)
def no_caller_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without a token, a CA file or the plaintext switch in the environment."""
    for name in CALLER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def token_file(folder: Path, content: str) -> Path:
    path = folder / "user-service-token"
    path.write_text(content, encoding="utf-8")
    return path


def refusal(error: ValidationError) -> tuple[tuple[str | int, ...], str]:
    """The one refused setting and the message, as ``serve`` logs them."""
    [problem] = error.errors(include_input=False, include_url=False)
    return problem["loc"], problem["msg"]


def test_the_token_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRONTEND_WEB_USER_SERVICE_TOKEN", TOKEN)

    token = Settings().user_service_client_token

    assert token is not None
    assert token.get_secret_value() == TOKEN


def test_the_token_is_read_from_the_file_stripped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = token_file(tmp_path, f"\n{TOKEN}  \n")
    monkeypatch.setenv("FRONTEND_WEB_USER_SERVICE_TOKEN_FILE", str(path))

    token = Settings().user_service_client_token

    assert token is not None
    assert token.get_secret_value() == TOKEN


def test_both_token_settings_are_refused_naming_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FRONTEND_WEB_USER_SERVICE_TOKEN", TOKEN)
    monkeypatch.setenv("FRONTEND_WEB_USER_SERVICE_TOKEN_FILE", str(token_file(tmp_path, TOKEN)))

    with pytest.raises(ValidationError) as caught:
        Settings()

    loc, message = refusal(caught.value)
    assert loc == ("user_service_token_file",)
    assert (
        "FRONTEND_WEB_USER_SERVICE_TOKEN_FILE and FRONTEND_WEB_USER_SERVICE_TOKEN are both set"
        in message
    )
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "reason"),
    [("\n\n", "is empty"), (None, "cannot read the token file")],
    ids=["empty", "missing"],
)
def test_a_token_file_that_holds_no_token_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "missing" if content is None else token_file(tmp_path, content)
    monkeypatch.setenv("FRONTEND_WEB_USER_SERVICE_TOKEN_FILE", str(path))

    with pytest.raises(ValidationError) as caught:
        Settings()

    loc, message = refusal(caught.value)
    assert loc == ("user_service_token_file",)
    assert "FRONTEND_WEB_USER_SERVICE_TOKEN_FILE" in message
    assert reason in message


def test_the_token_is_in_no_repr_and_no_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRONTEND_WEB_USER_SERVICE_TOKEN", TOKEN)
    settings = Settings()

    assert TOKEN not in repr(settings)
    assert TOKEN not in settings.model_dump_json()


def test_the_client_is_not_built_without_a_token() -> None:
    with pytest.raises(MissingClientTokenError) as caught:
        create_app(Settings())

    assert "FRONTEND_WEB_USER_SERVICE_TOKEN_FILE or FRONTEND_WEB_USER_SERVICE_TOKEN" in str(
        caught.value
    )


def test_an_app_given_its_client_needs_no_token() -> None:
    app = create_app(Settings(), client=FrontendClient("http://127.0.0.1:8000"))

    assert app.title == "frontend-web"


def test_a_ca_file_of_pem_certificates_is_accepted(
    monkeypatch: pytest.MonkeyPatch, test_tls: TestTls
) -> None:
    monkeypatch.setenv("FRONTEND_WEB_USER_SERVICE_CA_FILE", str(test_tls.ca_file))

    assert Settings().user_service_ca_file == test_tls.ca_file


@pytest.mark.parametrize(
    ("name", "reason"),
    [("missing.pem", "cannot read"), ("text.pem", "holds no PEM certificate")],
)
def test_a_ca_file_that_is_not_readable_pem_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, reason: str
) -> None:
    (tmp_path / "text.pem").write_text("-----BEGIN CERTIFICATE-----\nnot one\n")
    monkeypatch.setenv("FRONTEND_WEB_USER_SERVICE_CA_FILE", str(tmp_path / name))

    with pytest.raises(ValidationError) as caught:
        Settings()

    loc, message = refusal(caught.value)
    assert loc == ("user_service_ca_file",)
    assert "FRONTEND_WEB_USER_SERVICE_CA_FILE" in message
    assert reason in message


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000",
        "http://localhost:8000",
        "http://[::1]:8000",
        "https://users.internal:8443",
    ],
)
def test_https_or_plain_http_to_a_loopback_host_is_accepted(url: str) -> None:
    assert Settings(user_service_url=url).user_service_url == url


def test_plain_http_to_another_host_is_refused_saying_why_and_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRONTEND_WEB_USER_SERVICE_URL", "http://users.internal:8000")

    with pytest.raises(ValidationError) as caught:
        Settings()

    loc, message = refusal(caught.value)
    assert loc == ("user_service_url",)
    assert "not a loopback host" in message
    assert "FRONTEND_WEB_USER_SERVICE_ALLOW_PLAINTEXT=true" in message


def test_plain_http_to_another_host_is_accepted_when_plaintext_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRONTEND_WEB_USER_SERVICE_URL", "http://users.mesh:8000")
    monkeypatch.setenv("FRONTEND_WEB_USER_SERVICE_ALLOW_PLAINTEXT", "true")

    assert Settings().user_service_url == "http://users.mesh:8000"


@pytest.mark.parametrize("url", ["users.internal:8000", "ftp://users.internal", "http://x/?a=1"])
def test_a_user_service_url_that_is_no_base_url_is_refused(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(user_service_url=url)

    assert refusal(caught.value)[0] == ("user_service_url",)


@pytest.fixture(scope="module")
def https_user_service(test_tls: TestTls) -> Iterator[StandInUserService]:
    with running_stand_in(tls=test_tls) as stand_in:
        yield stand_in


@contextmanager
def frontend_in_front_of(user_service: StandInUserService, ca_file: Path) -> Iterator[FormBrowser]:
    """Serve frontend-web calling ``user_service``, its certificate checked against ``ca_file``."""
    settings = Settings(
        user_service_url=user_service.base_url,
        user_service_token=SecretStr(TOKEN),
        user_service_ca_file=ca_file,
        rate_limit=UNREACHED_RATE_LIMIT,
    )
    with serve_in_thread(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        yield FormBrowser(client)


def test_sign_up_reaches_user_service_over_https_verified_against_the_ca_file(
    https_user_service: StandInUserService, test_tls: TestTls
) -> None:
    https_user_service.script(created())

    with frontend_in_front_of(https_user_service, test_tls.ca_file) as visitor:
        response = visitor.submit()

    assert response.status_code == 200
    assert "alice" in parse(response.text).text
    assert [r.authorization for r in https_user_service.received] == [f"Bearer {TOKEN}"]


def test_a_certificate_another_ca_signed_is_the_unavailable_page_never_a_500(
    https_user_service: StandInUserService, tmp_path: Path
) -> None:
    https_user_service.script(created())
    other = make_tls(tmp_path)

    with frontend_in_front_of(https_user_service, other.ca_file) as visitor:
        response = visitor.submit()

    assert response.status_code == 503
    assert "Sign-up is unavailable" in response.text
    assert https_user_service.received == []
