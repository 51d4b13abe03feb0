"""auth-service answers as its OpenAPI document says, on a real socket.

A body that is not JSON (not even UTF-8 text) is ``422`` ``invalid_request``,
as the document and the README say, never FastAPI's undocumented ``400``. The
client token's refusal is the documented ``401``; the document and its pages
(``/docs``, on by now) are open without a client token and need no other host.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import httpx
import jsonschema_rs
import pytest

from servicekit.openapi import DOCS_ASSETS_URL
from tests.auth_service.serving import add_user, served

if TYPE_CHECKING:
    from collections.abc import Iterator

    from auth_service.settings import Settings


@pytest.fixture
def base_url(sqlite_settings: Settings, password: str) -> Iterator[tuple[str, dict[str, str]]]:
    add_user(sqlite_settings, "alice", password)
    with served(sqlite_settings) as serving:
        yield serving


@pytest.fixture
def client(base_url: tuple[str, dict[str, str]]) -> Iterator[httpx.Client]:
    url, headers = base_url
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        yield http


@pytest.fixture
def anyone(base_url: tuple[str, dict[str, str]]) -> Iterator[httpx.Client]:
    """A client without a token."""
    with httpx.Client(base_url=base_url[0], timeout=30) as http:
        yield http


def assert_conforms(document: dict[str, Any], path: str, answer: httpx.Response) -> None:
    """Check the answer's status, body and headers against the document's ``POST`` of ``path``."""
    responses = document["paths"][path]["post"]["responses"]
    assert str(answer.status_code) in responses, f"{answer.status_code} is not documented"
    response = responses[str(answer.status_code)]
    schema = {
        **response["content"]["application/json"]["schema"],
        "components": document["components"],
    }
    validator = jsonschema_rs.validator_for(schema)
    errors = [error.message for error in validator.iter_errors(answer.json())]
    assert not errors, f"{answer.status_code} {answer.text} does not conform: {errors}"
    for name, header in response.get("headers", {}).items():
        value = answer.headers.get(name)
        if value is None:
            assert not header["required"], f"{answer.status_code} has no {name}"
            continue
        pattern = header["schema"].get("pattern")
        assert pattern is None or re.search(pattern, value), f"{name}: {value!r}"


NOT_JSON = [
    pytest.param(b"\x80", "application/json", id="not-utf-8"),
    pytest.param(b'{"username": "\xff", "password": "p"}', "application/json", id="latin-1"),
    pytest.param(b'{"username": "alice",', "application/json", id="cut-short"),
    pytest.param(b'{"username": "alice", "password": "p"}', "text/plain", id="not-json-media"),
]


@pytest.mark.parametrize(("body", "content_type"), NOT_JSON)
def test_a_body_that_is_not_json_is_422_invalid_request(
    client: httpx.Client, body: bytes, content_type: str
) -> None:
    document = client.get("/openapi.json").json()
    answer = client.post("/auth/validate", content=body, headers={"Content-Type": content_type})

    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_request")
    assert answer.json()["detail"], answer.text
    assert_conforms(document, "/auth/validate", answer)


def test_a_body_that_is_not_utf_8_names_the_body(client: httpx.Client) -> None:
    answer = client.post(
        "/auth/validate", content=b"\x80", headers={"Content-Type": "application/json"}
    )

    assert answer.json()["detail"] == [
        {"loc": ["body"], "msg": "The body is not JSON text (UTF-8).", "type": "json_invalid"}
    ]


@pytest.mark.parametrize("username", ["", "x" * 65, "alice smith"])
def test_a_username_the_rule_refuses_is_422_as_documented(
    client: httpx.Client, username: str
) -> None:
    document = client.get("/openapi.json").json()
    answer = client.post("/auth/validate", json={"username": username, "password": "p"})

    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_request")
    assert_conforms(document, "/auth/validate", answer)


def test_the_verdict_is_as_documented(client: httpx.Client, password: str) -> None:
    document = client.get("/openapi.json").json()
    answer = client.post("/auth/validate", json={"username": "ALICE", "password": password})

    assert answer.json() == {"valid": True, "subject": "alice"}
    assert_conforms(document, "/auth/validate", answer)


@pytest.mark.parametrize("authorization", ["", f"Bearer {'w' * 43}"], ids=["none", "unknown"])
def test_the_client_token_refusal_is_as_documented(
    client: httpx.Client, authorization: str
) -> None:
    document = client.get("/openapi.json").json()
    answer = client.post(
        "/auth/validate",
        json={"username": "alice", "password": "p"},
        headers={"Authorization": authorization},
    )

    assert (answer.status_code, answer.json()["code"]) == (401, "invalid_token")
    assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="auth-service"')
    assert_conforms(document, "/auth/validate", answer)


def test_the_documentation_is_open_and_needs_no_other_host(anyone: httpx.Client) -> None:
    page = anyone.get("/docs")
    assets = re.findall(r'(?:href|src)="([^"]+)"', page.text)

    assert page.status_code == 200
    assert anyone.get("/openapi.json").status_code == 200
    assert anyone.get("/redoc").status_code == 200
    assert assets, page.text
    assert all(asset.startswith(f"{DOCS_ASSETS_URL}/") for asset in assets), assets
    assert [anyone.get(asset).status_code for asset in assets] == [200] * len(assets)
    assert anyone.post("/auth/validate", json={"username": "a", "password": "p"}).status_code == 401
    assert anyone.get(f"{DOCS_ASSETS_URL}/no-such-asset.js").status_code == 401
