"""FrontendClient and user-service: the client token it sends, the TLS certificate it verifies."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from frontend_web.client import (
    Account,
    ClientTokenRejectedError,
    FrontendClient,
    InvalidCredentialsError,
    UserServiceUnavailableError,
)
from servicekit.upstream import client_ssl_context
from tests.frontend_web.stand_in_user_service import (
    INVALID,
    TOKEN_REFUSED,
    StandInUserService,
    created,
    problem,
    running_stand_in,
)
from tests.support.log_scan import register_secret
from tests.support.tls import make_tls

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterator

    from tests.support.tls import TestTls

TOKEN = register_secret("tok-frontend-web-4e7b21")
USERNAME = "alice"
CREDENTIAL = "correct horse battery staple"


def create_account(
    base_url: str, *, token: str | None = TOKEN, ssl_context: ssl.SSLContext | None = None
) -> Account:
    async def run() -> Account:
        async with FrontendClient(base_url, token=token, ssl_context=ssl_context) as client:
            return await client.create_account(USERNAME, CREDENTIAL)

    return asyncio.run(run())


@pytest.fixture
def plain_user_service(running_user_service: StandInUserService) -> StandInUserService:
    running_user_service.script(created())
    return running_user_service


@pytest.fixture(scope="module")
def https_user_service(test_tls: TestTls) -> Iterator[StandInUserService]:
    """The stand-in user-service over HTTPS, with a certificate of the session's test CA."""
    with running_stand_in(tls=test_tls) as stand_in:
        yield stand_in


@pytest.fixture
def secure_user_service(https_user_service: StandInUserService) -> StandInUserService:
    https_user_service.script(created())
    return https_user_service


def test_every_call_carries_the_token_as_a_bearer_token(
    plain_user_service: StandInUserService,
) -> None:
    async def run() -> None:
        async with FrontendClient(plain_user_service.base_url, token=TOKEN) as client:
            await client.create_account(USERNAME, CREDENTIAL)
            await client.create_account(USERNAME, CREDENTIAL)

    asyncio.run(run())

    assert [r.authorization for r in plain_user_service.received] == [f"Bearer {TOKEN}"] * 2


def test_without_a_token_no_authorization_is_sent(plain_user_service: StandInUserService) -> None:
    create_account(plain_user_service.base_url, token=None)

    assert [request.authorization for request in plain_user_service.received] == [None]


def test_a_401_with_a_challenge_is_the_token_rejected(
    plain_user_service: StandInUserService,
) -> None:
    plain_user_service.script(TOKEN_REFUSED)

    with pytest.raises(ClientTokenRejectedError, match="refused this client's token") as caught:
        create_account(plain_user_service.base_url)

    assert (caught.value.status, caught.value.code) == (401, "invalid_token")
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)


def test_a_401_with_a_challenge_and_any_body_is_the_token_rejected(
    plain_user_service: StandInUserService,
) -> None:
    plain_user_service.script(
        problem(401, "Invalid credentials", "invalid_credentials", {"WWW-Authenticate": "Bearer"})
    )

    with pytest.raises(ClientTokenRejectedError):
        create_account(plain_user_service.base_url)


def test_a_401_without_a_challenge_is_still_invalid_credentials(
    plain_user_service: StandInUserService,
) -> None:
    plain_user_service.script(INVALID)

    with pytest.raises(InvalidCredentialsError) as caught:
        create_account(plain_user_service.base_url)

    assert not isinstance(caught.value, ClientTokenRejectedError)


def test_the_token_rejected_is_an_unavailable_error() -> None:
    assert issubclass(ClientTokenRejectedError, UserServiceUnavailableError)
    assert not issubclass(ClientTokenRejectedError, InvalidCredentialsError)


def test_the_token_is_in_no_repr_of_the_client(plain_user_service: StandInUserService) -> None:
    async def reprs() -> list[str]:
        client = FrontendClient(plain_user_service.base_url, token=TOKEN)
        before = repr(client)
        async with client:
            return [before, repr(client), repr(vars(client).get("_session"))]

    assert all(TOKEN not in text for text in asyncio.run(reprs()))


@pytest.mark.parametrize("token", ["two words", "line\nbreak", ""])
def test_a_token_that_cannot_be_sent_is_refused_at_once(token: str) -> None:
    with pytest.raises(ValueError, match="visible ASCII"):
        FrontendClient("http://127.0.0.1:8000", token=token)


def test_the_certificate_is_verified_against_the_ca_file(
    secure_user_service: StandInUserService, test_tls: TestTls
) -> None:
    assert secure_user_service.base_url.startswith("https://")

    account = create_account(
        secure_user_service.base_url, ssl_context=client_ssl_context(test_tls.ca_file)
    )

    assert account == Account(id=1, username=USERNAME, status="created")
    assert [r.authorization for r in secure_user_service.received] == [f"Bearer {TOKEN}"]


def test_a_certificate_of_another_ca_is_unavailable_and_nothing_is_sent(
    secure_user_service: StandInUserService, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = make_tls(tmp_path_factory.mktemp("other-tls"))

    with pytest.raises(UserServiceUnavailableError, match=r"certificate .* could not be verified"):
        create_account(secure_user_service.base_url, ssl_context=client_ssl_context(other.ca_file))

    assert secure_user_service.received == []


def test_the_system_trust_store_does_not_trust_the_test_ca(
    secure_user_service: StandInUserService,
) -> None:
    with pytest.raises(UserServiceUnavailableError, match="could not be verified"):
        create_account(secure_user_service.base_url, ssl_context=client_ssl_context())

    assert secure_user_service.received == []
