"""``serve --workers N``: what uvicorn's supervisor does when a worker dies, hangs or cannot start.

Every test runs ``user-service serve`` as a real process, serving HTTPS, and
watches its workers through ``/proc``; its requests come as frontend-web's,
with frontend-web's client token. The supervisor checks its workers every half
second: it pings each (answered by a thread of the worker) and replaces one
that has exited or has not answered within 5 s. It stops with exit code 3 if a
worker could not start, rather than starting another.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.e2e.worker_processes import holder, is_running, wait_until, worker_pids
from tests.support.log_scan import register_log
from tests.support.servers import (
    HOST,
    STARTED,
    free_port,
    venv_command,
    wait_for_port,
    wait_for_startups,
)
from tests.support.system import (
    FRONTEND_WEB,
    USER_SERVICE,
    ServiceProcess,
    add_client,
    https_settings,
    tls_connection,
    verified,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.support.system import ClientToken
    from tests.support.tls import TestTls

pytestmark = pytest.mark.e2e

WORKERS = 2
STARTUP_FAILURE = 3
HEALTHCHECK_SECONDS = 5  # uvicorn's default ping timeout
REPLACED_WITHIN = 30.0
EXIT_WITHIN = 60.0
GRACEFUL_SECONDS = 5


def request_head(length: int, caller: ClientToken) -> bytes:
    """The head of a ``POST /accounts`` from ``caller`` whose body has ``length`` bytes."""
    authorization = caller.headers["Authorization"].encode()
    return (
        b"POST /accounts HTTP/1.1\r\nHost: user-service\r\ncontent-type: application/json\r\n"
        b"authorization: %s\r\ncontent-length: %d\r\n\r\n" % (authorization, length)
    )


def unfinished_request(caller: ClientToken) -> bytes:
    """Headers, and the first byte of a body of 100: in flight until the rest comes."""
    return request_head(100, caller) + b"{"


FINISHED_SERVER = re.compile(r'"message": "Finished server process \[(\d+)\]"')
GRACE_EXCEEDED = re.compile(r'"message": "Cancel \d+ running task\(s\), timeout graceful shutdown')


def command(port: int, *options: str) -> list[str]:
    return [venv_command("user-service"), "serve", "--host", HOST, "--port", str(port), *options]


def database_env(tmp_path: Path) -> dict[str, str]:
    """An account store in ``tmp_path``, and the workers' metrics directory there too."""
    return {
        "USER_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'accounts.db'}",
        "TMPDIR": str(tmp_path),
    }


def read_log(log_path: Path) -> str:
    return log_path.read_text(encoding="utf-8", errors="replace")


def frontend_web(tmp_path: Path) -> ClientToken:
    """Register frontend-web with the user-service of ``tmp_path``: the token its calls carry."""
    return add_client(USER_SERVICE, FRONTEND_WEB, database_env(tmp_path), tmp_path)


@contextlib.contextmanager
def workers_serving(
    tmp_path: Path, tls: TestTls, *options: str, workers: int = WORKERS
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """Run ``user-service serve --workers N`` over HTTPS until every worker is up.

    Yields:
        The supervisor, its port and its log file.
    """
    service = ServiceProcess(
        USER_SERVICE,
        database_env(tmp_path),
        tmp_path / "user-service.log",
        tls,
        options=("--workers", str(workers), *options),
        workers=workers,
    )
    with service.running() as supervisor:
        wait_until(
            lambda: len(worker_pids(supervisor.pid)) == workers,
            timeout=REPLACED_WITHIN,
            what=f"{workers} workers",
        )
        yield supervisor, service.port, service.log_path


def livez(port: int, tls: TestTls) -> int:
    return httpx.get(f"https://{HOST}:{port}/livez", timeout=10, verify=verified(tls)).status_code


def replacement_of(supervisor: int, gone: int) -> list[int] | None:
    """The workers, once ``gone`` has been replaced by a new one; ``None`` until then."""
    workers = worker_pids(supervisor)
    return workers if len(workers) == WORKERS and gone not in workers else None


def test_a_killed_worker_is_replaced(tmp_path: Path, test_tls: TestTls) -> None:
    with workers_serving(tmp_path, test_tls) as (supervisor, port, log_path):
        first, second = worker_pids(supervisor.pid)
        os.kill(first, signal.SIGKILL)  # as the out-of-memory killer would

        workers = wait_until(
            lambda: replacement_of(supervisor.pid, first),
            timeout=REPLACED_WITHIN,
            what=f"worker {first} replaced",
        )
        wait_for_startups(log_path, WORKERS + 1, supervisor)

        assert second in workers
        assert livez(port, test_tls) == 200
        assert supervisor.poll() is None
        assert f"Child process [{first}] died" in read_log(log_path)


def test_a_worker_that_exits_by_itself_is_replaced_and_the_others_serve_on(
    tmp_path: Path, test_tls: TestTls
) -> None:
    with workers_serving(tmp_path, test_tls) as (supervisor, port, log_path):
        first, second = worker_pids(supervisor.pid)
        os.kill(first, signal.SIGTERM)  # it shuts down cleanly and exits with 0

        workers = wait_until(
            lambda: replacement_of(supervisor.pid, first),
            timeout=REPLACED_WITHIN,
            what=f"worker {first} replaced",
        )
        wait_for_startups(log_path, WORKERS + 1, supervisor)

        assert second in workers
        assert livez(port, test_tls) == 200
        assert supervisor.poll() is None  # a clean exit of one worker does not stop the service
        log = read_log(log_path)
        assert str(first) in FINISHED_SERVER.findall(log)
        assert f"Child process [{first}] died" in log


def test_a_hung_worker_is_killed_and_replaced(tmp_path: Path, test_tls: TestTls) -> None:
    with workers_serving(tmp_path, test_tls) as (supervisor, port, log_path):
        first, second = worker_pids(supervisor.pid)
        stopped_at = time.monotonic()
        os.kill(first, signal.SIGSTOP)  # it can no longer answer the supervisor's ping
        try:
            workers = wait_until(
                lambda: replacement_of(supervisor.pid, first),
                timeout=REPLACED_WITHIN,
                what=f"hung worker {first} replaced",
            )
            replaced_after = time.monotonic() - stopped_at
        finally:
            if is_running(first):
                os.kill(first, signal.SIGKILL)
        wait_for_startups(log_path, WORKERS + 1, supervisor)

        assert second in workers
        assert not is_running(first)
        # Not before its ping had gone unanswered for the whole timeout.
        assert replaced_after >= HEALTHCHECK_SECONDS
        assert livez(port, test_tls) == 200
        assert f"Child process [{first}] died" in read_log(log_path)


def test_sigterm_lets_a_request_in_flight_finish(tmp_path: Path, test_tls: TestTls) -> None:
    caller = frontend_web(tmp_path)
    with (
        workers_serving(tmp_path, test_tls) as (supervisor, port, log_path),
        tls_connection(port, test_tls) as client,
    ):
        body = b'{"username": "", "password": "pw-e2e-drain-51c3"}'
        client.sendall(request_head(len(body), caller) + body[:1])
        wait_until(
            lambda: holder(port, client, worker_pids(supervisor.pid)),
            timeout=10,
            what="a worker accepts the connection",
        )

        supervisor.send_signal(signal.SIGTERM)
        wait_until(
            lambda: "Waiting for connections to close" in read_log(log_path),
            timeout=30,
            what="the worker holding the request waits for it",
        )
        client.sendall(body[1:])
        with client.makefile("rb") as answered:
            answer = answered.read()  # until the worker closes the connection
        # As a client does once answered "connection: close": over TLS, the worker's
        # end stays open until this one closes too.
        client.close()
        exit_code = supervisor.wait(timeout=EXIT_WITHIN)

    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 422 ")
    assert b"connection: close" in rest.lower()
    assert b"username" in rest
    assert exit_code == 0
    assert GRACE_EXCEEDED.findall(read_log(log_path)) == []


def test_sigterm_stops_every_worker_at_once_within_the_graceful_timeout(
    tmp_path: Path, test_tls: TestTls
) -> None:
    workers = 3
    caller = frontend_web(tmp_path)
    with (
        workers_serving(
            tmp_path, test_tls, "--graceful-timeout", str(GRACEFUL_SECONDS), workers=workers
        ) as (supervisor, port, log_path),
        contextlib.ExitStack() as clients,
    ):
        pids = worker_pids(supervisor.pid)
        held: dict[int, socket.socket] = {}
        for _ in range(100):  # until every worker holds a request that never finishes
            client = clients.enter_context(tls_connection(port, test_tls))
            client.sendall(unfinished_request(caller))
            pid = wait_until(
                functools.partial(holder, port, client, pids),
                timeout=10,
                what="a worker accepts the connection",
            )
            held.setdefault(pid, client)
            if len(held) == workers:
                break
        assert sorted(held) == sorted(pids)

        asked_at = time.monotonic()
        supervisor.send_signal(signal.SIGTERM)
        exit_code = supervisor.wait(timeout=EXIT_WITHIN)
        took = time.monotonic() - asked_at
        answers = [client.makefile("rb").read() for client in held.values()]

    assert exit_code == 0
    # Each worker gave its request the graceful time, all at the same time:
    # one after another, three would take three times as long.
    assert GRACEFUL_SECONDS <= took < 2 * GRACEFUL_SECONDS, took
    # Cancelled: each request is answered 503 with Retry-After, not uvicorn's bare 500.
    assert [answer.partition(b"\r\n")[0] for answer in answers] == [
        b"HTTP/1.1 503 Service Unavailable"
    ] * workers
    assert all(b"retry-after: 1" in answer.lower() for answer in answers)
    assert all(b'"code": "shutting_down"' in answer for answer in answers)
    assert len(GRACE_EXCEEDED.findall(read_log(log_path))) == workers
    assert [pid for pid in pids if is_running(pid)] == []


def test_sighup_replaces_every_worker(tmp_path: Path, test_tls: TestTls) -> None:
    with workers_serving(tmp_path, test_tls) as (supervisor, port, log_path):
        old = set(worker_pids(supervisor.pid))
        supervisor.send_signal(signal.SIGHUP)

        new = wait_until(
            lambda: (
                workers
                if len(workers := set(worker_pids(supervisor.pid))) == WORKERS and not workers & old
                else None
            ),
            timeout=2 * REPLACED_WITHIN,
            what="every worker replaced",
        )
        wait_for_startups(log_path, 2 * WORKERS, supervisor)

        assert supervisor.poll() is None
        assert livez(port, test_tls) == 200
        log = read_log(log_path)
        assert "Received SIGHUP, restarting processes." in log
        assert old <= {int(pid) for pid in FINISHED_SERVER.findall(log)}
        assert new.isdisjoint(old)


def test_sigttin_adds_a_worker_and_sigttou_removes_one(tmp_path: Path, test_tls: TestTls) -> None:
    with workers_serving(tmp_path, test_tls) as (supervisor, port, log_path):
        supervisor.send_signal(signal.SIGTTIN)
        wait_until(
            lambda: len(worker_pids(supervisor.pid)) == WORKERS + 1,
            timeout=REPLACED_WITHIN,
            what="one worker more",
        )
        wait_for_startups(log_path, WORKERS + 1, supervisor)

        supervisor.send_signal(signal.SIGTTOU)
        wait_until(
            lambda: len(worker_pids(supervisor.pid)) == WORKERS,
            timeout=REPLACED_WITHIN,
            what="one worker fewer",
        )

        assert supervisor.poll() is None
        assert livez(port, test_tls) == 200


def run_to_exit(args: list[str], env: dict[str, str], log_path: Path) -> tuple[int, float]:
    """Run a command to its end; return its exit code and how long it ran."""
    register_log(log_path)
    started = time.monotonic()
    with log_path.open("wb") as log:
        exit_code = subprocess.run(
            args,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
            timeout=EXIT_WITHIN,
        ).returncode
    return exit_code, time.monotonic() - started


def test_a_port_already_taken_is_refused_before_any_worker_starts(tmp_path: Path) -> None:
    log_path = tmp_path / "second.log"
    with socket.create_server((HOST, 0)) as taken:
        port = taken.getsockname()[1]
        exit_code, _ = run_to_exit(
            command(port, "--workers", str(WORKERS)), database_env(tmp_path), log_path
        )

    assert exit_code == STARTUP_FAILURE
    log = read_log(log_path)
    assert "Address already in use" in log
    assert "Started server process" not in log


def test_an_app_factory_that_raises_stops_the_supervisor(tmp_path: Path) -> None:
    log_path = tmp_path / "user-service.log"
    env = {**database_env(tmp_path), "USER_SERVICE_AUTH_TIMEOUT": "not-a-number-7f3e"}

    exit_code, _ = run_to_exit(command(free_port(), "--workers", str(WORKERS)), env, log_path)

    assert exit_code == STARTUP_FAILURE
    log = read_log(log_path)
    # Each worker tried at most once (on a busy machine the first failure may stop the
    # supervisor before the other worker got as far); none was started again.
    tries = log.count("refused its settings: auth_timeout: Input should be a valid number")
    assert 1 <= tries <= WORKERS
    assert "failed to start, stopping the parent process" in log
    assert "not-a-number-7f3e" not in log  # settings are logged without their values


def test_a_worker_whose_start_up_fails_stops_the_supervisor(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database's folder should be")
    log_path = tmp_path / "user-service.log"
    env = {"USER_SERVICE_DATABASE_URL": f"sqlite:///{blocker / 'accounts.db'}"}

    exit_code, _ = run_to_exit(command(free_port(), "--workers", str(WORKERS)), env, log_path)

    assert exit_code == STARTUP_FAILURE
    log = read_log(log_path)
    assert 1 <= log.count("Application startup failed. Exiting.") <= WORKERS
    assert "failed to start, stopping the parent process" in log
    assert STARTED not in log


def test_workers_outlive_a_killed_supervisor_until_their_process_group_is_stopped(
    tmp_path: Path, test_tls: TestTls
) -> None:
    port = free_port()
    log_path = tmp_path / "user-service.log"
    register_log(log_path)
    with log_path.open("ab") as log:
        supervisor = subprocess.Popen(
            command(port, "--workers", str(WORKERS)),
            env={**os.environ, **database_env(tmp_path), **https_settings(USER_SERVICE, test_tls)},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, as a service manager gives it
        )
    workers: list[int] = []
    try:
        wait_for_port(port, process=supervisor)
        wait_for_startups(log_path, WORKERS, supervisor)
        workers = wait_until(
            lambda: pids if len(pids := worker_pids(supervisor.pid)) == WORKERS else None,
            timeout=REPLACED_WITHIN,
            what=f"{WORKERS} workers",
        )

        supervisor.kill()  # SIGKILL: it can tell its workers nothing
        supervisor.wait(timeout=EXIT_WITHIN)

        assert all(is_running(pid) for pid in workers)
        assert livez(port, test_tls) == 200  # nobody watches them, but they serve on

        os.killpg(supervisor.pid, signal.SIGTERM)
        wait_until(
            lambda: not any(is_running(pid) for pid in workers),
            timeout=EXIT_WITHIN,
            what="the workers stop",
        )
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                if is_running(pid):
                    os.kill(pid, signal.SIGKILL)

    assert sorted(map(int, FINISHED_SERVER.findall(read_log(log_path)))) == sorted(workers)
    # Nobody removed the workers' metrics directory either.
    assert len(list(tmp_path.glob("servicekit-metrics-*"))) == 1
    with pytest.raises(httpx.ConnectError):
        livez(port, test_tls)
