"""schemathesis against auth-service and user-service, each a real process with its real neighbour.

Each service is started with its own ``serve`` command on a free port, its
SQLite database in the test's folder, a client registered with its own
``clients add`` command; schemathesis reads the document the service serves
(``/openapi.json``) and tests every operation in it against the service: every
check but the response time's, every phase, the stateful one following the
document's links. user-service calls a real auth-service, which knows a few
users, so that some sign-ups succeed and their accounts are read back.

A run passes with no failed check, having had the answers that show it
reached the operations' real work; and afterwards no line of the services'
logs holds a traceback or records a 500.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING

import pytest

from tests.contracts.fuzzing import KnownUser, fuzz, log_problems
from tests.support.log_scan import register_secret
from tests.support.system import AUTH_SERVICE, USER_SERVICE, ServiceProcess, add_client, add_user

if TYPE_CHECKING:
    from pathlib import Path

    from tests.contracts.fuzzing import FuzzRun

pytestmark = pytest.mark.contract

FUZZER = "schemathesis"
"""The client name the fuzzer calls each service as."""

PASSWORD = "pw-fuzz-2b9d-never-echo-me"
"""The password of every known user: the run offers it, and the log scan looks for it."""

USERNAMES = ("alice", "bob", "carol", "dave")
USERS = tuple(KnownUser(username, PASSWORD) for username in USERNAMES)

NEVER_LOCKED = "1000000"
"""auth-service's lockout threshold behind user-service: the fuzzer's wrong guesses
must not lock the known users out before they have signed up."""


def _auth_service(folder: Path, **settings: str) -> tuple[ServiceProcess, dict[str, str]]:
    """auth-service over plain HTTP on loopback, its database in ``folder``, knowing USERS."""
    env = {"AUTH_SERVICE_DATABASE_URL": f"sqlite:///{folder / 'auth.db'}", **settings}
    for user in USERS:
        add_user(env, user.username, register_secret(user.password))
    return ServiceProcess(AUTH_SERVICE, env, folder / "auth-service.log", None), env


def _document_url(service: ServiceProcess) -> str:
    return f"{service.url}/openapi.json"


def _assert_clean(run: FuzzRun, services: tuple[ServiceProcess, ...]) -> None:
    assert not run.findings, "schemathesis found:\n" + run.summary()
    assert not run.errors, "schemathesis met errors:\n" + run.summary()
    assert run.exit_code == 0, run.summary()
    problems = [problem for service in services for problem in log_problems(service.log_path)]
    assert not problems, "the logs hold tracebacks or 500s:\n" + "\n".join(problems)


def test_auth_service_holds_to_its_document(tmp_path: Path) -> None:
    auth, auth_env = _auth_service(tmp_path)
    token = add_client(AUTH_SERVICE, FUZZER, auth_env, tmp_path).token
    with auth.running():
        run = fuzz(AUTH_SERVICE, _document_url(auth), token, tmp_path / "fuzz", USERS)
    assert run.statuses["POST /auth/validate", 200], run.statuses
    _assert_clean(run, (auth,))


def test_user_service_holds_to_its_document(tmp_path: Path) -> None:
    auth, auth_env = _auth_service(tmp_path, AUTH_SERVICE_LOCKOUT_THRESHOLD=NEVER_LOCKED)
    users_env = {"USER_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'accounts.db'}"}
    auth_token = add_client(AUTH_SERVICE, USER_SERVICE, auth_env, tmp_path)
    token = add_client(USER_SERVICE, FUZZER, users_env, tmp_path).token
    users = ServiceProcess(
        USER_SERVICE,
        {
            **users_env,
            "USER_SERVICE_AUTH_URL": auth.url,
            "USER_SERVICE_AUTH_TOKEN_FILE": str(auth_token.file),
            "USER_SERVICE_AUTH_TOKEN": "",
        },
        tmp_path / "user-service.log",
        None,
    )
    with ExitStack() as running:
        running.enter_context(auth.running())
        running.enter_context(users.running())
        run = fuzz(USER_SERVICE, _document_url(users), token, tmp_path / "fuzz", USERS)
    assert run.statuses["POST /accounts", 201], run.statuses
    assert run.statuses["GET /accounts/{account_id}", 200], run.statuses
    _assert_clean(run, (auth, users))


def test_the_log_check_finds_a_traceback_and_a_500(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    lines = [
        '{"level": "INFO", "message": "GET /livez 200", "status": 200}',
        '{"level": "ERROR", "message": "failed", "exception": "Traceback (most recent..."}',
        '{"level": "INFO", "message": "POST /accounts 500", "status": 500}',
        "Traceback (most recent call last):",
        '{"level": "WARNING", "message": "POST /accounts 503", "status": 503}',
    ]
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert [problem.split(":")[1] for problem in log_problems(log)] == ["2", "3", "4"]
