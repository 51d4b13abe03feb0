"""The HTTP API, served by uvicorn on a real socket with its lifespan running."""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING

import pytest

from auth_service.admin import UserAdmin
from auth_service.passwords import MAX_PASSWORD_LENGTH
from tests.auth_service.serving import add_user, metric, serving, validate

if TYPE_CHECKING:
    from collections.abc import Iterator

    import httpx

    from auth_service.settings import Settings

REQUEST_ID = "same-id-for-both"


@pytest.fixture
def client(sqlite_settings: Settings, password: str) -> Iterator[httpx.Client]:
    add_user(sqlite_settings, "alice", password)
    with serving(sqlite_settings) as http:
        yield http


def answer(response: httpx.Response) -> tuple[int, object]:
    return response.status_code, response.json()


def test_right_password_is_valid(client: httpx.Client, password: str) -> None:
    assert answer(validate(client, "alice", password)) == (
        200,
        {"valid": True, "subject": "alice"},
    )


def test_wrong_password_is_invalid(client: httpx.Client) -> None:
    assert answer(validate(client, "alice", "guess")) == (
        200,
        {"valid": False, "subject": "alice"},
    )


def test_unknown_user_is_invalid(client: httpx.Client, password: str) -> None:
    assert answer(validate(client, "mallory", password)) == (
        200,
        {"valid": False, "subject": "mallory"},
    )


def test_unknown_user_and_wrong_password_get_byte_identical_answers(
    sqlite_settings: Settings, password: str
) -> None:
    def ask(client: httpx.Client) -> tuple[int, list[tuple[str, str]], bytes]:
        response = client.post(
            "/auth/validate",
            json={"username": "bob", "password": "guess"},
            headers={"X-Request-ID": REQUEST_ID},
        )
        headers = [(k, v) for k, v in response.headers.multi_items() if k != "date"]
        return response.status_code, headers, response.content

    add_user(sqlite_settings, "bob", password)
    with serving(sqlite_settings) as client, UserAdmin(sqlite_settings) as admin:
        wrong_password = ask(client)
        admin.remove("bob")
        unknown_user = ask(client)

    assert wrong_password == unknown_user
    assert wrong_password[2] == b'{"valid":false,"subject":"bob"}'


def test_username_is_canonicalised_and_the_subject_is_canonical(
    client: httpx.Client, password: str
) -> None:
    assert [
        validate(client, name, password).json()
        for name in ("ALICE", "\uff21\uff2c\uff29\uff23\uff25")
    ] == [{"valid": True, "subject": "alice"}] * 2


def test_other_normal_form_of_the_password_is_valid(sqlite_settings: Settings) -> None:
    add_user(sqlite_settings, "alice", unicodedata.normalize("NFC", "café crème"))
    with serving(sqlite_settings) as client:
        response = validate(client, "alice", unicodedata.normalize("NFD", "café crème"))

    assert response.json() == {"valid": True, "subject": "alice"}


def test_ideographic_space_in_the_password_is_a_space(client: httpx.Client) -> None:
    response = validate(client, "alice", "correct\u3000horse\u3000battery\u3000staple")

    assert response.json() == {"valid": True, "subject": "alice"}


def test_password_that_cannot_be_normalised_is_answered_like_a_wrong_one(
    client: httpx.Client,
) -> None:
    verifications = metric(client, "auth_argon2_operations_total", operation="verify")

    response = validate(client, "alice", "tab\tin password")

    assert answer(response) == (200, {"valid": False, "subject": "alice"})
    assert metric(client, "auth_argon2_operations_total", operation="verify") == verifications + 1


def test_longest_password_is_checked(sqlite_settings: Settings) -> None:
    longest = "é" * MAX_PASSWORD_LENGTH
    add_user(sqlite_settings, "alice", longest)
    with serving(sqlite_settings) as client:
        right = validate(client, "alice", longest)
        one_less = validate(client, "alice", longest[:-1])

    assert [right.json()["valid"], one_less.json()["valid"]] == [True, False]


@pytest.mark.parametrize(
    "body",
    [
        {"username": "alice"},
        {"password": "guess"},
        {"username": "", "password": "guess"},
        {"username": "alice", "password": ""},
        {"username": "a" * 65, "password": "guess"},
        {"username": "has space", "password": "guess"},
        {"username": "alice", "password": "x" * (MAX_PASSWORD_LENGTH + 1)},
        {"username": 7, "password": "guess"},
    ],
    ids=[
        "missing-password",
        "missing-username",
        "empty-username",
        "empty-password",
        "too-long-username",
        "invalid-username",
        "1025-character-password",
        "username-not-a-string",
    ],
)
def test_malformed_body_is_422_invalid_request(
    client: httpx.Client, body: dict[str, object]
) -> None:
    response = client.post("/auth/validate", json=body)

    assert (response.status_code, response.json()["code"]) == (422, "invalid_request")
    assert isinstance(response.json()["detail"], list)


def test_invalid_username_is_422_naming_the_username(client: httpx.Client) -> None:
    response = validate(client, "has space", "guess")

    [error] = response.json()["detail"]
    assert (response.status_code, error["loc"]) == (422, ["body", "username"])
    assert "username" in error["msg"]


def test_body_that_is_not_json_is_422_invalid_request(client: httpx.Client) -> None:
    response = client.post(
        "/auth/validate", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert (response.status_code, response.json()["code"]) == (422, "invalid_request")


def test_422_does_not_echo_the_password(client: httpx.Client) -> None:
    response = validate(client, "alice", "s3cret-" * 200)

    assert response.status_code == 422
    assert "s3cret" not in response.text


def test_body_over_16_kib_is_413(client: httpx.Client) -> None:
    body = b'{"username": "alice", "password": "' + b"x" * 16_400 + b'"}'

    response = client.post(
        "/auth/validate", content=body, headers={"content-type": "application/json"}
    )

    assert answer(response) == (
        413,
        {"detail": "The request body is larger than 16384 bytes.", "code": "body_too_large"},
    )


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/no-such-path", 404, "not_found"),
        ("GET", "/auth/validate", 405, "method_not_allowed"),
    ],
    ids=["no-such-path", "no-such-method"],
)
def test_a_request_the_framework_refuses_has_a_code(
    client: httpx.Client, method: str, path: str, status: int, code: str
) -> None:
    response = client.request(method, path)

    assert (response.status_code, response.json()["code"]) == (status, code)
    assert list(response.json()) == ["detail", "code"]


def test_request_id_is_returned(client: httpx.Client) -> None:
    response = client.get("/livez", headers={"X-Request-ID": "abc-123"})

    assert response.headers["X-Request-ID"] == "abc-123"


def test_livez_answers_ok(client: httpx.Client) -> None:
    assert answer(client.get("/livez")) == (200, {"status": "ok"})


def test_readyz_answers_ok_with_the_database(client: httpx.Client) -> None:
    assert answer(client.get("/readyz")) == (200, {"status": "ok"})


def test_metrics_count_requests_and_validations_by_outcome(
    client: httpx.Client, password: str
) -> None:
    validate(client, "alice", password)
    validate(client, "alice", "guess")
    validate(client, "nobody", "guess")

    assert [
        metric(client, "auth_validations_total", outcome=outcome)
        for outcome in ("valid", "invalid", "locked", "overloaded")
    ] == [1, 2, 0, 0]
    assert (
        metric(client, "http_requests_total", method="POST", route="/auth/validate", status="200")
        == 3
    )


def test_openapi_describes_the_validation(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert set(paths["/auth/validate"]["post"]["responses"]) >= {"200", "422", "429", "503"}


def test_openapi_documents_the_code_of_every_error(client: httpx.Client) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    with_codes = [schema for schema in schemas.values() if "code" in schema.get("properties", {})]

    assert all(schema["required"] == ["detail", "code"] for schema in with_codes)
    assert {
        code
        for schema in with_codes
        for code in schema["properties"]["code"].get(
            "enum", [schema["properties"]["code"].get("const")]
        )
    } == {
        "invalid_request",
        "body_too_large",
        "locked_out",
        "overloaded",
        "store_unavailable",
        "invalid_token",
        "shutting_down",
    }
    assert schemas["InvalidRequestProblem"]["properties"]["code"]["const"] == "invalid_request"
