"""user-service answers as its OpenAPI document says, on a real socket.

A body that is not JSON (not even UTF-8 text) is ``422`` ``invalid_request``,
as the document and the README say, never FastAPI's undocumented ``400``.
Each answer of the routes' table has its status, ``code`` and ``Retry-After``
in the document; every answer's ``X-Request-ID`` has the documented form; the
document and its pages are open without a client token and need no other host.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import httpx
import jsonschema_rs
import pytest
from starlette.exceptions import HTTPException

from servicekit.openapi import DOCS_ASSETS_URL
from tests.user_service.client_headers import served
from tests.user_service.stub_verifier import RecordingVerifier
from user_service import routes
from user_service.accounts import InMemoryAccountStore
from user_service.auth_client import AuthServiceOverloadedError, AuthServiceRateLimitedError
from user_service.factory import create_app
from user_service.routes import CLIENT_CLOSED_REQUEST, ErrorAnswer, answer_to
from user_service.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Iterator

ACCOUNT = {"username": "alice", "password": "pw-docs-3c9e-never-echo-me"}


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    app = create_app(
        Settings(), auth_verifier=RecordingVerifier(), account_store=InMemoryAccountStore()
    )
    with served(app) as http:
        yield http


@pytest.fixture(scope="module")
def document(client: httpx.Client) -> dict[str, Any]:
    served_document: dict[str, Any] = client.get("/openapi.json").json()
    return served_document


def documented(document: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    """The document's response for ``status`` of the operation, failing when there is none."""
    responses = document["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} does not document {status}"
    response: dict[str, Any] = responses[str(status)]
    return response


def assert_conforms(
    document: dict[str, Any], method: str, path: str, answer: httpx.Response
) -> None:
    """Check the answer's body and headers against what the document says of its status."""
    response = documented(document, method, path, answer.status_code)
    schema = response["content"]["application/json"]["schema"]
    body_schema = {**schema, "components": document["components"]}
    errors = [
        error.message
        for error in jsonschema_rs.validator_for(body_schema).iter_errors(answer.json())
    ]
    assert not errors, f"{answer.status_code} {answer.text} does not conform: {errors}"
    for name, header in response.get("headers", {}).items():
        value = answer.headers.get(name)
        if value is None:
            assert not header["required"], f"{answer.status_code} has no {name}"
            continue
        pattern = header["schema"].get("pattern")
        assert pattern is None or re.search(pattern, value), f"{name}: {value!r}"


def documented_codes(document: dict[str, Any], method: str, path: str, status: int) -> set[str]:
    """Every ``code`` the document allows for ``status`` of the operation."""
    schema = documented(document, method, path, status)["content"]["application/json"]["schema"]
    refs = [item["$ref"] for item in schema.get("anyOf", [schema])]
    codes: set[str] = set()
    for ref in refs:
        code = document["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]["code"]
        codes.update(code.get("enum", [code.get("const")]))
    return codes


NOT_JSON = [
    pytest.param(b"\x80", "application/json", id="not-utf-8"),
    pytest.param(b'{"username": "\xff", "password": "p"}', "application/json", id="latin-1"),
    pytest.param(b"\xc3", "application/vnd.signup+json", id="not-utf-8-json-subtype"),
    pytest.param(b'{"username": "alice",', "application/json", id="cut-short"),
    pytest.param(b"username=alice&password=p", "application/x-www-form-urlencoded", id="a-form"),
    pytest.param(b'{"username": "alice", "password": "p"}', "text/plain", id="not-json-media"),
]


@pytest.mark.parametrize(("body", "content_type"), NOT_JSON)
def test_a_body_that_is_not_json_is_422_invalid_request(
    client: httpx.Client, document: dict[str, Any], body: bytes, content_type: str
) -> None:
    answer = client.post("/accounts", content=body, headers={"Content-Type": content_type})

    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_request")
    assert answer.json()["detail"], answer.text
    assert_conforms(document, "post", "/accounts", answer)


def test_a_body_that_is_not_utf_8_names_the_body(client: httpx.Client) -> None:
    answer = client.post("/accounts", content=b"\x80", headers={"Content-Type": "application/json"})

    assert answer.json()["detail"] == [
        {"loc": ["body"], "msg": "The body is not JSON text (UTF-8).", "type": "json_invalid"}
    ]


def test_fastapis_400_for_a_body_it_cannot_read_becomes_422() -> None:
    answer = answer_to(HTTPException(400, "There was an error parsing the body"))

    assert (answer.status_code, answer.code) == (422, "invalid_request")
    assert isinstance(answer.detail, list)


def _table() -> list[ErrorAnswer]:
    table: dict[type[Exception], ErrorAnswer] = routes._ANSWERS  # noqa: SLF001 (what is checked)
    answers = [
        *table.values(),
        answer_to(AuthServiceOverloadedError(3)),
        answer_to(AuthServiceRateLimitedError(9)),
    ]
    return [answer for answer in answers if answer.status_code != CLIENT_CLOSED_REQUEST]


@pytest.mark.parametrize(
    "answer", _table(), ids=lambda answer: f"{answer.status_code}-{answer.code}"
)
def test_each_answer_of_the_table_is_documented(
    document: dict[str, Any], answer: ErrorAnswer
) -> None:
    response = documented(document, "post", "/accounts", answer.status_code)

    assert answer.code in documented_codes(document, "post", "/accounts", answer.status_code)
    for name in answer.headers or {}:
        assert name in response["headers"], f"{answer.status_code} {answer.code} sends {name}"


def test_the_client_token_refusal_is_as_documented(
    client: httpx.Client, document: dict[str, Any]
) -> None:
    no_token = {"Authorization": ""}
    created = client.post("/accounts", json=ACCOUNT, headers=no_token)
    read = client.get("/accounts/1", headers=no_token)
    wrong = client.get("/accounts/1", headers={"Authorization": f"Bearer {'w' * 43}"})

    for answer in (created, read, wrong):
        assert (answer.status_code, answer.json()["code"]) == (401, "invalid_token")
    assert_conforms(document, "post", "/accounts", created)
    assert_conforms(document, "get", "/accounts/{account_id}", read)
    assert_conforms(document, "get", "/accounts/{account_id}", wrong)
    assert wrong.headers["WWW-Authenticate"].endswith('error="invalid_token"')


def test_a_created_account_is_as_documented_and_linked(
    client: httpx.Client, document: dict[str, Any]
) -> None:
    created = client.post(
        "/accounts", json={**ACCOUNT, "username": "linked"}, headers={"Idempotency-Key": "k-1"}
    )
    replayed = client.post(
        "/accounts", json={**ACCOUNT, "username": "linked"}, headers={"Idempotency-Key": "k-1"}
    )
    link = documented(document, "post", "/accounts", 201)["links"]["GetAccount"]
    account_id = created.json()[link["parameters"]["account_id"].removeprefix("$response.body#/")]
    read = client.get(f"/accounts/{account_id}")

    assert (created.status_code, replayed.status_code, read.status_code) == (201, 201, 200)
    assert "Idempotent-Replayed" not in created.headers
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert_conforms(document, "post", "/accounts", created)
    assert_conforms(document, "post", "/accounts", replayed)
    assert_conforms(document, "get", "/accounts/{account_id}", read)
    assert link["operationId"] == document["paths"]["/accounts/{account_id}"]["get"]["operationId"]


@pytest.mark.parametrize("sent", ["trace-7.a:b", "has space", "x" * 129, ""])
def test_every_request_id_returned_has_the_documented_form(
    client: httpx.Client, document: dict[str, Any], sent: str
) -> None:
    answer = client.get("/livez", headers={"X-Request-ID": sent})
    pattern = documented(document, "get", "/livez", 200)["headers"]["X-Request-ID"]["schema"][
        "pattern"
    ]

    assert re.search(pattern, answer.headers["X-Request-ID"])
    assert (answer.headers["X-Request-ID"] == sent) is bool(re.search(pattern, sent))


def test_the_documentation_is_open_and_needs_no_other_host() -> None:
    app = create_app(
        Settings(), auth_verifier=RecordingVerifier(), account_store=InMemoryAccountStore()
    )
    with served(app) as with_token, httpx.Client(base_url=str(with_token.base_url)) as anyone:
        page = anyone.get("/docs")
        assets = re.findall(r'(?:href|src)="([^"]+)"', page.text)

        assert page.status_code == 200
        assert anyone.get("/openapi.json").status_code == 200
        assert assets, page.text
        assert all(asset.startswith(f"{DOCS_ASSETS_URL}/") for asset in assets), assets
        assert [anyone.get(asset).status_code for asset in assets] == [200] * len(assets)
        assert anyone.get("/accounts/1").status_code == 401
