"""AuthClient's side of the trust with auth-service: its client token, and the TLS it verifies."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import httpx
import pytest
import trustme
from pydantic import SecretStr

from servicekit.upstream import client_ssl_context
from tests.support import tls as certificates
from tests.support.client_tokens import bearer, issue_token
from tests.support.log_scan import register_secret
from tests.support.servers import serve_in_thread
from tests.user_service.stand_in_auth import (
    StandInAuthService,
    serve_stand_in,
    token_refused,
)
from user_service.accounts import InMemoryAccountStore
from user_service.auth_client import (
    AuthClient,
    AuthClientRejectedError,
    AuthServiceError,
    AuthServiceUnavailableError,
)
from user_service.factory import create_app
from user_service.settings import Settings

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterator
    from pathlib import Path

    from tests.support.tls import TestTls

USERNAME = "alice"
PASSWORD = "correct horse battery staple"
TOKEN = register_secret("tok-user-service-5c2a9d")
TIMEOUT = 2.0


def validate(
    base_url: str, *, token: str | None = TOKEN, ssl_context: ssl.SSLContext | None = None
) -> bool:
    """Open a client on ``base_url``, ask it once, close it."""

    async def run() -> bool:
        async with AuthClient(
            base_url,
            token=token,
            ssl_context=ssl_context,
            connect_timeout=TIMEOUT,
            timeout=TIMEOUT,
            retries=0,
        ) as client:
            return await client.validate_credentials(USERNAME, PASSWORD)

    return asyncio.run(run())


@pytest.fixture(scope="module")
def other_tls(tmp_path_factory: pytest.TempPathFactory) -> TestTls:
    """Another CA, which signed nothing the stand-ins serve."""
    return certificates.make_tls(tmp_path_factory.mktemp("other-tls"))


@pytest.fixture(scope="module")
def https_auth(test_tls: TestTls) -> Iterator[StandInAuthService]:
    """The stand-in auth-service over HTTPS, with a certificate of the session's test CA."""
    with serve_stand_in(tls=test_tls) as stand_in:
        yield stand_in


@pytest.fixture
def secure_auth(https_auth: StandInAuthService) -> StandInAuthService:
    https_auth.reset()
    return https_auth


def test_every_call_carries_the_token_as_a_bearer_token(
    stand_in_auth: StandInAuthService,
) -> None:
    async def run() -> None:
        async with AuthClient(stand_in_auth.base_url, token=TOKEN, timeout=TIMEOUT) as client:
            await client.validate_credentials(USERNAME, PASSWORD)
            await client.validate_credentials(USERNAME, PASSWORD)

    asyncio.run(run())

    assert [r.authorization for r in stand_in_auth.received] == [f"Bearer {TOKEN}"] * 2


def test_without_a_token_no_authorization_is_sent(stand_in_auth: StandInAuthService) -> None:
    validate(stand_in_auth.base_url, token=None)

    assert [request.authorization for request in stand_in_auth.received] == [None]


@pytest.mark.parametrize("error", ["invalid_token", None], ids=["unknown-token", "no-token"])
def test_401_is_the_client_rejected_error(
    stand_in_auth: StandInAuthService, error: str | None
) -> None:
    stand_in_auth.answer(token_refused(error=error))

    with pytest.raises(AuthClientRejectedError, match="refused the client token") as caught:
        validate(stand_in_auth.base_url)

    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)
    assert len(stand_in_auth.received) == 1  # an answer: never retried


def test_the_rejected_error_is_an_auth_service_error() -> None:
    assert issubclass(AuthClientRejectedError, AuthServiceError)


def test_the_token_is_in_no_repr_of_the_client(stand_in_auth: StandInAuthService) -> None:
    async def reprs() -> list[str]:
        client = AuthClient(stand_in_auth.base_url, token=TOKEN)
        before = repr(client)
        async with client:
            return [before, repr(client), repr(vars(client).get("_session"))]

    assert all(TOKEN not in text for text in asyncio.run(reprs()))


@pytest.mark.parametrize("token", ["two words", "line\nbreak", ""])
def test_a_token_that_cannot_be_sent_is_refused_at_once(token: str) -> None:
    with pytest.raises(ValueError, match="visible ASCII"):
        AuthClient("http://127.0.0.1:8001", token=token)


def test_the_certificate_is_verified_against_the_ca_file(
    secure_auth: StandInAuthService, test_tls: TestTls
) -> None:
    assert secure_auth.base_url.startswith("https://")

    assert validate(secure_auth.base_url, ssl_context=client_ssl_context(test_tls.ca_file))
    assert [request.authorization for request in secure_auth.received] == [f"Bearer {TOKEN}"]


def test_a_certificate_of_another_ca_is_unavailable_and_nothing_is_sent(
    secure_auth: StandInAuthService, other_tls: TestTls
) -> None:
    with pytest.raises(AuthServiceUnavailableError, match="certificate could not be verified"):
        validate(secure_auth.base_url, ssl_context=client_ssl_context(other_tls.ca_file))

    assert secure_auth.received == []


def test_the_system_trust_store_does_not_trust_the_test_ca(
    secure_auth: StandInAuthService,
) -> None:
    with pytest.raises(AuthServiceUnavailableError, match="certificate could not be verified"):
        validate(secure_auth.base_url)

    assert secure_auth.received == []


def test_a_certificate_for_another_host_name_is_refused(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server = ca.issue_cert("auth.internal")
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    tls = certificates.TestTls(
        tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    )

    with (
        serve_stand_in(tls=tls) as stand_in,
        pytest.raises(AuthServiceUnavailableError, match="certificate could not be verified"),
    ):
        validate(stand_in.base_url, ssl_context=client_ssl_context(tls.ca_file))


def test_an_untrusted_certificate_is_a_503_and_an_error_naming_the_ca_setting(
    secure_auth: StandInAuthService, other_tls: TestTls, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        auth_url=secure_auth.base_url,
        auth_token=SecretStr(TOKEN),
        auth_ca_file=other_tls.ca_file,
        auth_retries=0,
    )
    store = InMemoryAccountStore()
    headers = bearer(issue_token(store, "frontend-web"))
    with (
        serve_in_thread(create_app(settings, account_store=store)) as url,
        caplog.at_level(logging.ERROR, logger="user_service"),
    ):
        answer = httpx.post(
            f"{url}/accounts", json={"username": USERNAME, "password": PASSWORD}, headers=headers
        )

    assert (answer.status_code, answer.json()["code"]) == (503, "auth_unavailable")
    assert any("USER_SERVICE_AUTH_CA_FILE" in record.getMessage() for record in caplog.records)
    assert secure_auth.received == []
