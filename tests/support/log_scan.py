"""A scan of every log written during the test run for the passwords and tokens the tests use.

Two kinds of log are scanned, and nothing else:

- the output of every service process started with
  :func:`tests.support.servers.run_process`, which registers its ``log_path``;
- every record logged in the test process itself, at any level, which a
  :class:`logging.FileHandler` on the root logger writes into the session's log
  folder from the start of the session.

Pact files, databases and test sources hold these passwords legitimately; they
are never registered, so they are never scanned. At the end of the session
``tests/conftest.py`` scans the registered files; a password found in any of
them is listed in the terminal summary and fails the session. The client
tokens the tests make are random, so each is registered as it is made
(:func:`register_secret`) and looked for too.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, quote_plus

import pytest

from servicekit.logs import JsonFormatter

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _pytest.terminal import TerminalReporter

# Every password the tests send anywhere. A new test password belongs here, so
# that the scan looks for it too. Passwords too common to search for
# ("guess", "secret", "another") are left out: they would match innocent text.
TEST_PASSWORDS: tuple[str, ...] = (
    "correct-horse-battery-staple",
    "correct horse battery staple",
    "wrong-password",
    "guess-number-eleven",
    "tried-during-the-rush",
    "sent-with-a-revoked-token",
    "pw-7f3c9e-never-echo-me",
    "pw-5d1a0b-never-echo-me",
    "pässwörd with spaces",
    "another password",
    "pw-e2e-durability-3c1f",
    "pw-e2e-workers-8d2a",
)

IN_PROCESS_LOG = "in-process.log"


@dataclass(frozen=True)
class Leak:
    """A password found in a log.

    Attributes:
        path: The log file.
        line_number: The line it is on, counted from 1.
        password: The password found.
    """

    path: Path
    line_number: int
    password: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line_number}: {self.password!r}"


def _spellings(password: str) -> set[str]:
    """The password as a log may spell it: as is, escaped in JSON, or URL-encoded."""
    return {
        password,
        json.dumps(password)[1:-1],
        json.dumps(password, ensure_ascii=False)[1:-1],
        quote(password, safe=""),
        quote_plus(password, safe=""),
    }


def scan(paths: Iterable[Path], passwords: Iterable[str] = TEST_PASSWORDS) -> list[Leak]:
    """Return every line of the files at ``paths`` that holds one of ``passwords``.

    Missing files are skipped.

    Args:
        paths: Log files.
        passwords: What to look for, in each of the spellings a log may use.

    Returns:
        One :class:`Leak` per file, line and password, in file and line order.
    """
    spellings = [(password, _spellings(password)) for password in passwords]
    leaks: list[Leak] = []
    for path in paths:
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for line_number, line in enumerate(text.splitlines(), start=1):
            leaks.extend(
                Leak(path, line_number, password)
                for password, forms in spellings
                if any(form in line for form in forms)
            )
    return leaks


class Session(Protocol):
    """The part of :class:`pytest.Session` that the scan sets."""

    exitstatus: int | pytest.ExitCode


@dataclass
class LogRegistry:
    """The log files of one test session, and the handler that writes in-process logs.

    Attributes:
        folder: Where the in-process log is written; a new temporary folder
            when :meth:`start` finds none.
        files: Every log file registered so far, in order.
        leaks: What :meth:`finish` found.
        secrets: The tokens registered so far, looked for beside the test passwords.
        unscanned: Registered files that :meth:`finish` could not find, because
            something deleted them before the end of the session.
        handler_was_removed: Whether :meth:`finish` found that something had
            removed the in-process handler from its logger, so that later
            in-process records went unscanned.
    """

    folder: Path | None = None
    files: list[Path] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)
    unscanned: list[Path] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list, repr=False)
    handler_was_removed: bool = False
    _handler: logging.FileHandler | None = field(default=None, init=False, repr=False)
    _logger: logging.Logger | None = field(default=None, init=False, repr=False)

    def register(self, path: Path) -> None:
        """Have ``path`` scanned at the end of the session."""
        path = path.absolute()
        if path not in self.files:
            self.files.append(path)

    @property
    def in_process_log(self) -> Path:
        """The file the in-process records are written to, once :meth:`start` has run."""
        if self.folder is None:
            msg = "the in-process log has not been started"
            raise RuntimeError(msg)
        return self.folder / IN_PROCESS_LOG

    def start(self, logger: logging.Logger | None = None) -> None:
        """Write every record of ``logger`` (the root logger by default) to the in-process log.

        The logger's level is lowered to ``DEBUG``, so that no record is dropped
        before it reaches the handler. Does nothing if already started.
        """
        if self._handler is not None:
            return
        logger = logger or logging.getLogger()
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="pact-two-hop-logs-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        # Mode "a": if a logging.config.dictConfig() call (uvicorn makes one per
        # server) closes the handler, its next record reopens the file and appends.
        handler = logging.FileHandler(self.in_process_log, mode="a", encoding="utf-8")
        handler.setLevel(logging.DEBUG)
        # The services' own formatter: it writes a record's extras and exception
        # too, where a password could hide as well as in the message.
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        self.register(self.in_process_log)
        self._handler, self._logger = handler, logger

    def detached(self) -> bool:
        """Whether something removed the in-process handler from its logger since :meth:`start`."""
        return (
            self._handler is not None
            and self._logger is not None
            and self._handler not in self._logger.handlers
        )

    def stop(self) -> None:
        """Flush and remove the in-process handler."""
        handler, logger = self._handler, self._logger
        if handler is None or logger is None:
            return
        logger.removeHandler(handler)
        handler.close()
        self._handler = None

    def register_secret(self, secret: str) -> None:
        """Have ``secret`` (a token a test made) looked for in the logs at the end."""
        self.secrets.append(secret)

    def finish(self, session: Session, passwords: Iterable[str] | None = None) -> list[Leak]:
        """Stop the in-process log, scan every registered file, and fail ``session`` on a leak.

        Without a leak, the folder is removed; with one, it is kept for reading.

        Args:
            session: The session, whose exit status becomes ``TESTS_FAILED`` on a leak.
            passwords: What to look for; the test passwords and the registered
                secrets when omitted.

        Returns:
            The leaks found, also kept in :attr:`leaks`.
        """
        self.handler_was_removed = self.detached()
        self.stop()
        self.unscanned = [path for path in self.files if not path.is_file()]
        if passwords is None:
            passwords = (*TEST_PASSWORDS, *self.secrets)
        self.leaks = scan(self.files, passwords)
        if self.leaks:
            if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        elif self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        return self.leaks

    def summary_lines(self) -> list[str]:
        """What the terminal summary says about the scan."""
        lines = [f"scanned {len(self.files) - len(self.unscanned)} log file(s)"]
        lines.extend(f"not scanned, deleted before the end: {path}" for path in self.unscanned)
        if self.handler_was_removed:
            lines.append(
                "WARNING: the in-process log handler was removed from the root logger"
                " during the run; later in-process records were not scanned"
            )
        if self.leaks:
            lines.append(f"FAILED: {len(self.leaks)} test password(s) or token(s) found in logs:")
            lines.extend(f"  {leak}" for leak in self.leaks)
        else:
            lines.append("no test password or token found")
        return lines

    def write_summary(self, terminalreporter: TerminalReporter) -> None:
        """Add the scan's section to the terminal summary, in red if a password was found."""
        terminalreporter.section("test passwords and tokens in logs", red=bool(self.leaks))
        for line in self.summary_lines():
            terminalreporter.write_line(line, red=line.startswith(("FAILED", "  ")))


SESSION = LogRegistry()
"""The log files of this test session; ``run_process`` registers into it."""


def register_log(path: Path) -> None:
    """Have the log file at ``path`` scanned at the end of this session."""
    SESSION.register(path)


def register_secret(secret: str) -> str:
    """Have ``secret`` looked for in this session's logs at its end; return it."""
    SESSION.register_secret(secret)
    return secret
