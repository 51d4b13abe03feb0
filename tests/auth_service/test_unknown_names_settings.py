"""AUTH_SERVICE_MAX_TRACKED_UNKNOWN_NAMES: its default, the environment, and what is refused."""

from __future__ import annotations

import os

import pytest

from auth_service.lockout import LockoutPolicy
from auth_service.settings import Settings


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AUTH_SERVICE_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("clean_environment")
def test_a_hundred_thousand_unknown_names_are_tracked_by_default() -> None:
    settings = Settings()

    assert settings.max_tracked_unknown_names == 100_000
    assert LockoutPolicy.from_settings(settings).max_tracked_unknown_names == 100_000


@pytest.mark.usefixtures("clean_environment")
def test_the_cap_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_SERVICE_MAX_TRACKED_UNKNOWN_NAMES", "250")

    assert Settings().max_tracked_unknown_names == 250


@pytest.mark.parametrize("value", [0, -1])
def test_a_cap_below_one_is_refused(value: int) -> None:
    with pytest.raises(ValueError, match="max_tracked_unknown_names"):
        Settings.model_validate({"max_tracked_unknown_names": value})
