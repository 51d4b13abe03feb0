"""The checks every caller's upstream settings go through: URL, plaintext rule, token, CA file."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr

from servicekit.upstream import (
    MissingClientTokenError,
    Upstream,
    base_url,
    bearer_authorization,
    check_ca_file,
    check_plaintext,
    client_ssl_context,
    client_token,
    is_loopback,
    read_token_file,
    require_token,
    token_value,
)
from tests.support.log_scan import register_secret

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.tls import TestTls

UPSTREAM = Upstream("auth-service", "USER_SERVICE_AUTH_")
TOKEN = register_secret("tok-3b9e1f-never-logged")


def test_setting_names_share_the_prefix() -> None:
    assert (
        UPSTREAM.url_setting,
        UPSTREAM.token_setting,
        UPSTREAM.token_file_setting,
        UPSTREAM.ca_file_setting,
        UPSTREAM.allow_plaintext_setting,
    ) == (
        "USER_SERVICE_AUTH_URL",
        "USER_SERVICE_AUTH_TOKEN",
        "USER_SERVICE_AUTH_TOKEN_FILE",
        "USER_SERVICE_AUTH_CA_FILE",
        "USER_SERVICE_AUTH_ALLOW_PLAINTEXT",
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:8001", "http://127.0.0.1:8001"),
        (" https://auth.internal:8443/ \n", "https://auth.internal:8443"),
        ("https://auth.internal/prefix/", "https://auth.internal/prefix"),
    ],
)
def test_base_url_is_normalised(given: str, expected: str) -> None:
    assert base_url(given) == expected


@pytest.mark.parametrize(
    "given", ["", "auth.internal:8001", "ftp://auth.internal", "https://auth.internal/?a=1"]
)
def test_anything_but_an_http_base_url_is_refused(given: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        base_url(given)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.200.3.4", "[::1]", "::1", "localhost", "LocalHost"]
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["10.0.0.5", "128.0.0.1", "[::2]", "localhost.example", "auth.internal", ""]
)
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8001", "http://localhost:8001", "http://[::1]:8001"]
)
def test_plain_http_to_a_loopback_host_is_accepted(url: str) -> None:
    assert check_plaintext(base_url(url), UPSTREAM, allowed=False) == base_url(url)


def test_https_to_any_host_is_accepted() -> None:
    url = base_url("https://auth.internal:8443")

    assert check_plaintext(url, UPSTREAM, allowed=False) == url


def test_plain_http_to_another_host_is_refused_with_the_reason_and_the_setting() -> None:
    with pytest.raises(ValueError, match="not a loopback host") as caught:
        check_plaintext(base_url("http://auth.internal:8001"), UPSTREAM, allowed=False)

    message = str(caught.value)
    assert "plain text" in message
    assert "USER_SERVICE_AUTH_ALLOW_PLAINTEXT=true" in message


def test_plain_http_to_another_host_is_accepted_when_allowed() -> None:
    url = base_url("http://auth.mesh:8001")

    assert check_plaintext(url, UPSTREAM, allowed=True) == url


def test_a_token_value_is_stripped() -> None:
    token = token_value(SecretStr(f"  {TOKEN}\n"), setting="X_TOKEN")

    assert token is not None
    assert token.get_secret_value() == TOKEN


@pytest.mark.parametrize("given", [None, "", "  \n"])
def test_an_empty_token_value_counts_as_unset(given: str | None) -> None:
    assert token_value(None if given is None else SecretStr(given), setting="X_TOKEN") is None


@pytest.mark.parametrize("given", ["two words", "tab\there", "naïve", "line\nbreak"])
def test_a_token_that_cannot_be_a_bearer_token_is_refused_without_showing_it(given: str) -> None:
    with pytest.raises(ValueError, match="X_TOKEN must be visible ASCII") as caught:
        token_value(SecretStr(given), setting="X_TOKEN")

    assert given not in str(caught.value)


def test_a_token_file_is_read_and_stripped(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"\n  {TOKEN}  \n\n", encoding="utf-8")

    assert read_token_file(path, setting="X_TOKEN_FILE").get_secret_value() == TOKEN


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(" \n", encoding="utf-8")

    with pytest.raises(ValueError, match=r"X_TOKEN_FILE: the token file .* is empty"):
        read_token_file(path, setting="X_TOKEN_FILE")


@pytest.mark.parametrize(
    ("name", "reason"),
    [("missing", "No such file"), ("folder", "Is a directory"), ("binary", "not text")],
)
def test_an_unreadable_token_file_is_refused_with_why(
    tmp_path: Path, name: str, reason: str
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00token")

    with pytest.raises(ValueError, match=f"X_TOKEN_FILE: cannot read the token file .*{reason}"):
        read_token_file(tmp_path / name, setting="X_TOKEN_FILE")


def test_a_token_file_with_spaces_inside_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"{TOKEN} {TOKEN}\n", encoding="utf-8")

    with pytest.raises(ValueError, match="must be visible ASCII") as caught:
        read_token_file(path, setting="X_TOKEN_FILE")

    assert TOKEN not in str(caught.value)


def test_the_token_comes_from_the_value_or_the_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN, encoding="utf-8")

    from_value = client_token(SecretStr(TOKEN), None, UPSTREAM)
    from_file = client_token(None, path, UPSTREAM)

    assert from_value is not None
    assert from_file is not None
    assert from_value.get_secret_value() == from_file.get_secret_value() == TOKEN
    assert client_token(None, None, UPSTREAM) is None


def test_a_token_value_and_a_token_file_together_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN, encoding="utf-8")

    with pytest.raises(ValueError, match="both set") as caught:
        client_token(SecretStr(TOKEN), path, UPSTREAM)

    message = str(caught.value)
    assert "USER_SERVICE_AUTH_TOKEN_FILE and USER_SERVICE_AUTH_TOKEN" in message
    assert TOKEN not in message


def test_a_missing_token_is_an_error_naming_both_settings() -> None:
    with pytest.raises(MissingClientTokenError) as caught:
        require_token(None, UPSTREAM)

    assert "USER_SERVICE_AUTH_TOKEN_FILE or USER_SERVICE_AUTH_TOKEN" in str(caught.value)
    assert require_token(SecretStr(TOKEN), UPSTREAM) == TOKEN


def test_the_bearer_header_carries_the_token() -> None:
    assert bearer_authorization(TOKEN) == f"Bearer {TOKEN}"


def test_a_header_breaking_token_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="visible ASCII") as caught:
        bearer_authorization(f"{TOKEN}\r\nX-Evil: 1")

    assert TOKEN not in str(caught.value)


def test_a_ca_file_of_pem_certificates_is_accepted(test_tls: TestTls) -> None:
    assert check_ca_file(test_tls.ca_file, setting="X_CA_FILE") == test_tls.ca_file
    assert check_ca_file(None, setting="X_CA_FILE") is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("missing.pem", "cannot read .*No such file"),
        ("folder", "cannot read .*Is a directory"),
        ("empty.pem", "holds no PEM certificate"),
        ("text.pem", "holds no PEM certificate"),
        ("key.pem", "holds no PEM certificate"),
    ],
)
def test_a_ca_file_that_is_not_readable_pem_is_refused_with_why(
    tmp_path: Path, test_tls: TestTls, name: str, reason: str
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "empty.pem").write_bytes(b"")
    (tmp_path / "text.pem").write_text("not a certificate\n")
    (tmp_path / "key.pem").write_bytes(test_tls.key_file.read_bytes())

    with pytest.raises(ValueError, match=f"X_CA_FILE: .*{reason}"):
        check_ca_file(tmp_path / name, setting="X_CA_FILE")


def test_the_client_context_checks_certificates_and_host_names(test_tls: TestTls) -> None:
    for context in (client_ssl_context(), client_ssl_context(test_tls.ca_file)):
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.check_hostname
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_the_client_context_trusts_the_ca_file_only(test_tls: TestTls) -> None:
    context = client_ssl_context(test_tls.ca_file)

    assert len(context.get_ca_certs()) == 1
