"""The whole system as real processes: auth-service, user-service and frontend-web."""

from __future__ import annotations

import os
import subprocess
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from tests.support.servers import HOST, free_port, run_process, venv_command

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

ALICE = "alice"
ALICE_PASSWORD = "correct-horse-battery-staple"
WRONG_PASSWORD = "wrong-password"


@dataclass
class Service:
    """A service process that can be stopped and started again on the same port."""

    name: str
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    _running: ExitStack | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        """Start the process and wait until it listens."""
        assert self._running is None, f"{self.name} is running already"
        stack = ExitStack()
        command = [venv_command(self.name), "serve", "--host", HOST, "--port", str(self.port)]
        stack.enter_context(
            run_process(command, port=self.port, env=self.env, log_path=self.log_path)
        )
        self._running = stack

    def stop(self) -> None:
        """Stop the process, if it runs, and wait until it has exited."""
        running, self._running = self._running, None
        if running is not None:
            running.close()


@dataclass(frozen=True)
class System:
    """The three services, each on its own free port, with their data in one folder."""

    auth: Service
    users: Service
    frontend: Service

    def account_status(self, account_id: int) -> int:
        """Ask user-service, not the page, whether account ``account_id`` exists."""
        return httpx.get(f"{self.users.url}/accounts/{account_id}").status_code


def add_user(env: dict[str, str], username: str, password: str) -> None:
    """Add a user to auth-service's store through its command line, password on stdin."""
    subprocess.run(
        [venv_command("auth-service"), "users", "add", username],
        input=f"{password}\n".encode(),
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=60,
    )


@contextmanager
def running_system(
    folder: Path, *, frontend_env: Mapping[str, str] | None = None
) -> Iterator[System]:
    """Start auth-service (with alice), user-service and frontend-web; stop them at exit.

    ``frontend_env`` adds to frontend-web's environment (its settings).
    """
    auth_env = {"AUTH_SERVICE_DATABASE_URL": f"sqlite:///{folder / 'auth.db'}"}
    add_user(auth_env, ALICE, ALICE_PASSWORD)
    auth = Service("auth-service", auth_env, folder / "auth-service.log")
    users = Service(
        "user-service",
        {
            "USER_SERVICE_AUTH_URL": auth.url,
            "USER_SERVICE_DATABASE_URL": f"sqlite:///{folder / 'accounts.db'}",
        },
        folder / "user-service.log",
    )
    frontend = Service(
        "frontend-web",
        {"FRONTEND_WEB_USER_SERVICE_URL": users.url, **(frontend_env or {})},
        folder / "frontend-web.log",
    )
    services = (auth, users, frontend)
    try:
        for service in services:
            service.start()
        yield System(auth, users, frontend)
    finally:
        for service in reversed(services):
            service.stop()
