"""The OpaqueString rule, and argon2id hashing and checking."""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING

import pytest
from argon2 import extract_parameters

from auth_service.passwords import (
    MAX_PASSWORD_LENGTH,
    InvalidPasswordError,
    PasswordHashing,
    normalise_password,
)

if TYPE_CHECKING:
    from auth_service.settings import Settings

CAFE_NFC = unicodedata.normalize("NFC", "café au lait")
CAFE_NFD = unicodedata.normalize("NFD", "café au lait")


class Operations:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, operation: str) -> None:
        self.seen.append(operation)


def test_nfc_and_nfd_forms_normalise_alike() -> None:
    assert CAFE_NFC != CAFE_NFD
    assert normalise_password(CAFE_NFD) == normalise_password(CAFE_NFC) == CAFE_NFC


def test_non_ascii_spaces_become_ascii_spaces() -> None:
    assert normalise_password("correct\u3000horse") == "correct horse"


def test_longest_password_is_kept_whole() -> None:
    password = "x" * MAX_PASSWORD_LENGTH

    assert normalise_password(password) == password


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("", "empty"),
        ("x" * (MAX_PASSWORD_LENGTH + 1), "more than 1024"),
        ("tab\there", "controls"),
        ("nul\x00here", "controls"),
    ],
    ids=["empty", "too-long", "tab", "nul"],
)
def test_unusable_password_is_refused_with_a_reason(password: str, reason: str) -> None:
    with pytest.raises(InvalidPasswordError, match=reason) as refusal:
        normalise_password(password)

    assert not password or password not in str(refusal.value)


def test_hash_is_argon2id_with_the_configured_cost(sqlite_settings: Settings) -> None:
    parameters = extract_parameters(PasswordHashing(sqlite_settings).hash("secret"))

    assert (
        parameters.type.name,
        parameters.time_cost,
        parameters.memory_cost,
        parameters.parallelism,
    ) == ("ID", 1, 1024, 1)


def test_hash_of_an_unusable_password_is_refused(sqlite_settings: Settings) -> None:
    with pytest.raises(InvalidPasswordError):
        PasswordHashing(sqlite_settings).hash("bad\x07password")


def test_right_password_matches(sqlite_settings: Settings, password: str) -> None:
    hashing = PasswordHashing(sqlite_settings)

    assert hashing.check(hashing.hash(password), password).matched


def test_wrong_password_does_not_match(sqlite_settings: Settings, password: str) -> None:
    hashing = PasswordHashing(sqlite_settings)

    assert not hashing.check(hashing.hash(password), password + "!").matched


def test_other_normal_form_of_the_password_matches(sqlite_settings: Settings) -> None:
    hashing = PasswordHashing(sqlite_settings)

    assert hashing.check(hashing.hash(CAFE_NFC), CAFE_NFD).matched


def test_unknown_user_costs_one_verification(sqlite_settings: Settings, password: str) -> None:
    operations = Operations()
    hashing = PasswordHashing(sqlite_settings, on_operation=operations)
    hashing.dummy_hash()
    operations.seen.clear()

    result = hashing.check(None, password)

    assert (result.matched, operations.seen) == (False, ["verify"])


def test_unusable_password_costs_one_verification_and_never_matches(
    sqlite_settings: Settings,
) -> None:
    operations = Operations()
    hashing = PasswordHashing(sqlite_settings, on_operation=operations)
    stored = hashing.hash("fine")
    hashing.dummy_hash()
    operations.seen.clear()

    result = hashing.check(stored, "tab\there")

    assert (result.matched, operations.seen) == (False, ["verify"])


def test_dummy_hash_has_the_current_cost(sqlite_settings: Settings) -> None:
    hashing = PasswordHashing(sqlite_settings)

    assert extract_parameters(hashing.dummy_hash()).memory_cost == 1024


def test_matching_hash_with_the_current_cost_needs_no_new_hash(
    sqlite_settings: Settings, password: str
) -> None:
    hashing = PasswordHashing(sqlite_settings)

    assert hashing.check(hashing.hash(password), password).new_hash is None


def test_matching_hash_with_an_old_cost_gets_a_new_hash(
    sqlite_settings: Settings, password: str
) -> None:
    old = PasswordHashing(sqlite_settings).hash(password)
    dearer = PasswordHashing(sqlite_settings.model_copy(update={"argon2_time_cost": 2}))

    result = dearer.check(old, password)

    assert result.matched
    assert result.new_hash is not None
    assert extract_parameters(result.new_hash).time_cost == 2
    assert dearer.check(result.new_hash, password).matched


def test_wrong_password_against_an_old_hash_gets_no_new_hash(
    sqlite_settings: Settings, password: str
) -> None:
    old = PasswordHashing(sqlite_settings).hash(password)
    dearer = PasswordHashing(sqlite_settings.model_copy(update={"argon2_time_cost": 2}))

    assert dearer.check(old, "wrong").new_hash is None


def test_corrupt_stored_hash_matches_nothing(
    sqlite_settings: Settings, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    result = PasswordHashing(sqlite_settings).check("not a hash", password)

    assert not result.matched
    assert "not an argon2 hash" in caplog.text
