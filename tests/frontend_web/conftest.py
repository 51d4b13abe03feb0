"""frontend-web served on a real socket, in front of a stand-in user-service on another."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest
from pydantic import SecretStr

from frontend_web.factory import create_app
from frontend_web.settings import Settings
from tests.frontend_web.html import Element, parse
from tests.frontend_web.stand_in_user_service import (
    StandInUserService,
    created,
    running_stand_in,
)
from tests.support.log_scan import register_secret
from tests.support.servers import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

# Listed in tests.support.log_scan.TEST_PASSWORDS, so a leak into a log fails the run.
PASSWORD = "pw-7f3c9e-never-echo-me"
OTHER_PASSWORD = "pw-5d1a0b-never-echo-me"
# Short, so that the tests of an in-flight twin do not wait for long.
RETRY_DELAYS = (0.01, 0.02)
# Far above what the tests post in a minute: only test_rate_limit.py meets the limit.
UNREACHED_RATE_LIMIT = "100000/minute"
# The client token frontend-web sends the stand-in user-service.
USER_SERVICE_TOKEN = register_secret("tok-frontend-web-for-user-service-2f6d")


@dataclass(frozen=True)
class Form:
    """The hidden fields of a rendered sign-up form."""

    csrf_token: str
    idempotency_key: str

    @classmethod
    def of(cls, page: Element) -> Form:
        csrf_token = page.field_value("csrf_token")
        idempotency_key = page.field_value("idempotency_key")
        assert csrf_token
        assert idempotency_key
        return cls(csrf_token, idempotency_key)


class FormBrowser:
    """Loads the form and submits it, keeping cookies, as a browser without JavaScript does."""

    def __init__(self, client: httpx.Client, base_url: str = "") -> None:
        self.client = client
        self.base_url = base_url

    def open_form(self) -> Form:
        response = self.client.get(f"{self.base_url}/")
        assert response.status_code == 200
        return Form.of(parse(response.text))

    def submit(
        self,
        username: str = "alice",
        password: str = PASSWORD,
        *,
        form: Form | None = None,
        **overrides: str,
    ) -> httpx.Response:
        form = form or self.open_form()
        fields = {
            "username": username,
            "password": password,
            "csrf_token": form.csrf_token,
            "idempotency_key": form.idempotency_key,
            **overrides,
        }
        return self.client.post(f"{self.base_url}/signup", data=fields)


@pytest.fixture(scope="session")
def running_user_service() -> Iterator[StandInUserService]:
    with running_stand_in() as stand_in:
        yield stand_in


@pytest.fixture
def user_service(running_user_service: StandInUserService) -> StandInUserService:
    running_user_service.script(created())
    return running_user_service


@pytest.fixture(scope="session")
def frontend_url(running_user_service: StandInUserService) -> Iterator[str]:
    settings = Settings(
        user_service_url=running_user_service.base_url,
        user_service_token=SecretStr(USER_SERVICE_TOKEN),
        rate_limit=UNREACHED_RATE_LIMIT,
    )
    with serve_in_thread(create_app(settings, in_flight_retry_delays=RETRY_DELAYS)) as url:
        yield url


@pytest.fixture
def visitor(frontend_url: str, user_service: StandInUserService) -> Iterator[FormBrowser]:
    del user_service  # requested for its fresh script
    with httpx.Client(base_url=frontend_url) as client:
        yield FormBrowser(client)
