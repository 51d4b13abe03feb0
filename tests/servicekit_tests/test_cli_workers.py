"""``serve --workers N``: its parsing, and the metrics directory the workers share."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import pytest

from servicekit.cli import MULTIPROCESS_DIRECTORY, add_serve_command, shared_metrics
from servicekit.metrics import multiprocess_mode


def serve_parser(**defaults: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="service")
    add_serve_command(parser.add_subparsers(dest="command"), default_port=9000, **defaults)
    return parser


@pytest.fixture
def temporary_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where new temporary directories go, with no multiprocess directory set."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv(MULTIPROCESS_DIRECTORY, raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    return tmp_path


def test_workers_default_to_one() -> None:
    assert serve_parser().parse_args(["serve"]).workers == 1


def test_a_service_chooses_its_default_workers_and_help_shows_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = serve_parser(default_workers=4)

    assert parser.parse_args(["serve"]).workers == 4
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--help"])
    assert "(default: 4)" in " ".join(capsys.readouterr().out.split())


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


def test_a_default_of_no_workers_is_refused() -> None:
    with pytest.raises(ValueError, match="default_workers must be positive"):
        serve_parser(default_workers=0)


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
