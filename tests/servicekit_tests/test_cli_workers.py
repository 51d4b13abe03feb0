"""``serve``: its options, how a worker's app is built, and the metrics directory workers share."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from auth_service.__main__ import main as auth_service_main
from frontend_web.__main__ import main as frontend_web_main
from servicekit.cli import (
    DEFAULT_GRACEFUL_TIMEOUT,
    MULTIPROCESS_DIRECTORY,
    add_serve_command,
    build_app,
    shared_metrics,
)
from servicekit.metrics import multiprocess_mode
from user_service.__main__ import main as user_service_main

if TYPE_CHECKING:
    from collections.abc import Callable

STARTUP_FAILURE = 3
REFUSED_VALUE = "not-a-number-c41d"


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="service")
    add_serve_command(parser.add_subparsers(dest="command"), default_port=9000)
    return parser


class _Settings(BaseModel):
    limit: int


def working_factory() -> FastAPI:
    return FastAPI(title="built")


def refusing_factory() -> FastAPI:
    _Settings(limit=REFUSED_VALUE)  # type: ignore[arg-type]
    return FastAPI()


def failing_factory() -> FastAPI:
    msg = "the store cannot be reached"
    raise RuntimeError(msg)


@pytest.fixture
def temporary_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where new temporary directories go, with no multiprocess directory set."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv(MULTIPROCESS_DIRECTORY, raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    return tmp_path


def test_workers_default_to_one() -> None:
    assert serve_parser().parse_args(["serve"]).workers == 1


@pytest.mark.parametrize("main", [user_service_main, auth_service_main, frontend_web_main])
def test_every_service_serves_with_one_worker_unless_told(
    main: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])

    assert exited.value.code == 0
    helped = " ".join(capsys.readouterr().out.split())
    assert "--workers N worker processes, at least 1 (default: 1)" in helped
    assert f"cancelled (default: {DEFAULT_GRACEFUL_TIMEOUT})" in helped


def test_workers_given_are_used() -> None:
    assert serve_parser().parse_args(["serve", "--workers", "3"]).workers == 3


@pytest.mark.parametrize("workers", ["0", "-2", "two", "1.5", ""])
def test_workers_that_are_not_a_positive_integer_are_a_usage_error(
    workers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        serve_parser().parse_args(["serve", "--workers", workers])

    assert exited.value.code == 2
    assert f"argument --workers: must be a positive integer, not {workers!r}" in (
        capsys.readouterr().err
    )


def test_requests_in_flight_get_a_graceful_timeout_of_twenty_seconds_unless_told() -> None:
    assert serve_parser().parse_args(["serve"]).graceful_timeout == 20
    assert serve_parser().parse_args(["serve", "--graceful-timeout", "5"]).graceful_timeout == 5


@pytest.mark.parametrize("seconds", ["0", "-1", "soon", "2.5"])
def test_a_graceful_timeout_that_is_not_a_positive_integer_is_a_usage_error(
    seconds: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        serve_parser().parse_args(["serve", "--graceful-timeout", seconds])

    assert exited.value.code == 2
    assert f"argument --graceful-timeout: must be a positive integer, not {seconds!r}" in (
        capsys.readouterr().err
    )


def test_a_worker_builds_its_app_with_the_factory() -> None:
    app = build_app(f"{__name__}:working_factory")

    assert isinstance(app, FastAPI)
    assert app.title == "built"


def test_settings_a_factory_refuses_are_a_start_up_failure_logged_without_their_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.ERROR, logger="servicekit.cli"),
        pytest.raises(SystemExit) as exited,
    ):
        build_app(f"{__name__}:refusing_factory")

    assert exited.value.code == STARTUP_FAILURE
    (record,) = caplog.records
    assert record.getMessage() == (
        f"the app factory {__name__}:refusing_factory refused its settings:"
        " limit: Input should be a valid integer, unable to parse string as an integer"
    )
    assert REFUSED_VALUE not in caplog.text


def test_a_factory_that_raises_is_a_start_up_failure_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.ERROR, logger="servicekit.cli"),
        pytest.raises(SystemExit) as exited,
    ):
        build_app(f"{__name__}:failing_factory")

    assert exited.value.code == STARTUP_FAILURE
    (record,) = caplog.records
    assert record.getMessage() == f"the app factory {__name__}:failing_factory failed"
    assert record.exc_info is not None
    assert "RuntimeError: the store cannot be reached" in caplog.text


@pytest.mark.parametrize("factory", ["no_such_module_here:create_app", f"{__name__}:missing"])
def test_a_factory_that_cannot_be_imported_is_a_start_up_failure(factory: str) -> None:
    with pytest.raises(SystemExit) as exited:
        build_app(factory)

    assert exited.value.code == STARTUP_FAILURE


def test_one_worker_shares_nothing(temporary_directories: Path) -> None:
    with shared_metrics(1):
        assert MULTIPROCESS_DIRECTORY not in os.environ
        assert list(temporary_directories.iterdir()) == []


def test_several_workers_share_a_new_directory_removed_at_the_end(
    temporary_directories: Path,
) -> None:
    with shared_metrics(2):
        directory = Path(os.environ[MULTIPROCESS_DIRECTORY])
        assert list(temporary_directories.iterdir()) == [directory]
        (directory / "counter_1.db").write_bytes(b"")

    assert MULTIPROCESS_DIRECTORY not in os.environ
    assert list(temporary_directories.iterdir()) == []
    # This process chose its mode when prometheus-client was imported; it stays single.
    assert not multiprocess_mode()


@pytest.mark.parametrize("variable", [MULTIPROCESS_DIRECTORY, "prometheus_multiproc_dir"])
def test_the_operators_directory_is_used_and_kept(
    temporary_directories: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    theirs = temporary_directories / "theirs"
    theirs.mkdir()
    monkeypatch.setenv(variable, str(theirs))

    with shared_metrics(2):
        assert os.environ[variable] == str(theirs)
        assert list(temporary_directories.iterdir()) == [theirs]

    assert os.environ[variable] == str(theirs)
    assert theirs.is_dir()
