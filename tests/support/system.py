"""The services as real processes, as deployed: every caller a registered client, over HTTPS.

auth-service and user-service serve HTTPS with the session's test certificate
(:mod:`tests.support.tls`); frontend-web serves plain HTTP, for the browser, as
``make run`` has it. Each caller holds a token that the service it calls
issued through its own command line (``clients add``) over its own database,
kept in a file (``*_TOKEN_FILE``), and verifies that service's certificate
against the test CA (``*_CA_FILE``). A test that calls user-service itself
calls it as frontend-web, with frontend-web's token.

:func:`running_system` starts the whole system; :class:`ServiceProcess`,
:func:`add_client` and :func:`caller_settings` start one service the same way.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from servicekit.client_tokens import new_token
from tests.support.client_tokens import bearer
from tests.support.log_scan import register_secret
from tests.support.processes import log_size
from tests.support.servers import HOST, free_port, run_process, venv_command, wait_for_startups

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from tests.support.tls import TestTls

AUTH_SERVICE = "auth-service"
USER_SERVICE = "user-service"
FRONTEND_WEB = "frontend-web"
SERVICES = (AUTH_SERVICE, USER_SERVICE, FRONTEND_WEB)

ALICE = "alice"
ALICE_PASSWORD = "correct-horse-battery-staple"
WRONG_PASSWORD = "wrong-password"

UNREACHED_RATE_LIMIT = "100000/minute"
"""frontend-web's limit on sign-ups per address here: no test reaches it unless it sets its own."""

COMMAND_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Hop:
    """A caller, the service it calls, and the prefix of the caller's settings for it.

    Attributes:
        caller: The calling service.
        provider: The service called.
        prefix: The prefix of the caller's settings (``URL``, ``TOKEN_FILE``, ``CA_FILE``...).
    """

    caller: str
    provider: str
    prefix: str


TO_AUTH_SERVICE = Hop(USER_SERVICE, AUTH_SERVICE, "USER_SERVICE_AUTH_")
TO_USER_SERVICE = Hop(FRONTEND_WEB, USER_SERVICE, "FRONTEND_WEB_USER_SERVICE_")


@dataclass(frozen=True)
class ClientToken:
    """A token a service issued to a client, and the file the client reads it from.

    Attributes:
        client: The client's name.
        provider: The service that issued it.
        token: The token.
        file: The file holding it (readable by its owner only).
    """

    client: str
    provider: str
    token: str = field(repr=False)
    file: Path

    @property
    def headers(self) -> dict[str, str]:
        """The header that presents the token."""
        return bearer(self.token)

    @classmethod
    def kept(cls, client: str, provider: str, token: str, folder: Path) -> ClientToken:
        """Keep ``token`` in ``folder/<client>-for-<provider>`` (mode 0600); register it.

        Returns:
            The token and its file.
        """
        file = folder / f"{client}-for-{provider}"
        file.touch(mode=0o600)
        file.chmod(0o600)
        file.write_text(f"{token}\n", encoding="ascii")
        return cls(client, provider, register_secret(token), file)


def settings_prefix(service: str) -> str:
    """Return the prefix of ``service``'s settings, e.g. ``USER_SERVICE_``."""
    return service.upper().replace("-", "_") + "_"


def add_client(
    provider: str, client: str, provider_env: Mapping[str, str], folder: Path
) -> ClientToken:
    """Register ``client`` with ``provider`` through its command line: ``clients add CLIENT``.

    Args:
        provider: The service called (``auth-service``, ``user-service``).
        client: The caller's name.
        provider_env: The provider's settings naming its database, added to this
            session's environment.
        folder: Where the token's file goes.

    Returns:
        The token the command printed, kept in a file and registered for the log scan.

    Raises:
        RuntimeError: If the command failed.
    """
    added = subprocess.run(
        [venv_command(provider), "clients", "add", client],
        env={**os.environ, **provider_env},
        capture_output=True,
        text=True,
        check=False,
        timeout=COMMAND_TIMEOUT_SECONDS,
    )
    if added.returncode != 0:
        msg = f"{provider} clients add {client} exited with {added.returncode}: {added.stderr}"
        raise RuntimeError(msg)
    return ClientToken.kept(client, provider, added.stdout.strip(), folder)


def stand_in_token(hop: Hop, folder: Path) -> ClientToken:
    """Make a token for a caller of a stand-in, which has no registry to issue one from."""
    return ClientToken.kept(hop.caller, hop.provider, new_token(), folder)


def add_user(auth_env: Mapping[str, str], username: str, password: str) -> None:
    """Add a user to auth-service's store through its command line, password on stdin."""
    subprocess.run(
        [venv_command(AUTH_SERVICE), "users", "add", username],
        input=f"{password}\n".encode(),
        env={**os.environ, **auth_env},
        check=True,
        capture_output=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
    )


def https_settings(service: str, tls: TestTls) -> dict[str, str]:
    """The settings that make ``service`` serve HTTPS with the test certificate."""
    prefix = settings_prefix(service)
    return {
        f"{prefix}TLS_CERT_FILE": str(tls.cert_file),
        f"{prefix}TLS_KEY_FILE": str(tls.key_file),
    }


def caller_settings(hop: Hop, url: str, token: ClientToken, tls: TestTls) -> dict[str, str]:
    """The settings of ``hop``'s caller: where the provider is, its token's file, the CA to trust.

    The token's value setting, which ``tests/conftest.py`` sets for the whole
    session, is emptied (counted as unset): a caller given both is refused.
    """
    return {
        f"{hop.prefix}URL": url,
        f"{hop.prefix}TOKEN_FILE": str(token.file),
        f"{hop.prefix}TOKEN": "",
        f"{hop.prefix}CA_FILE": str(tls.ca_file),
    }


def verified(tls: TestTls) -> ssl.SSLContext:
    """A client context that trusts the test CA only, and checks host names."""
    return ssl.create_default_context(cafile=str(tls.ca_file))


@contextmanager
def tls_connection(port: int, tls: TestTls, *, timeout: float = 30) -> Iterator[ssl.SSLSocket]:
    """Open a TLS connection to ``port`` on :data:`HOST`, verified against the test CA."""
    with (
        socket.create_connection((HOST, port), timeout=timeout) as raw,
        verified(tls).wrap_socket(raw, server_hostname=HOST) as connection,
    ):
        yield connection


@dataclass
class ServiceProcess:
    """A service's ``serve`` process, which can be stopped and started again on the same port.

    Attributes:
        name: The service (its console script).
        env: Its settings, added to this session's environment.
        log_path: Where its output goes (appended to on a restart).
        tls: The certificate it serves HTTPS with; plain HTTP if ``None``.
        options: More options of ``serve``, such as ``("--workers", "2")``.
        workers: The workers to wait for at each start: ``serve --workers N``
            logs a start-up for each; ``None`` waits only until it listens.
        port: Its port.
        process: Its process while it runs.
    """

    name: str
    env: dict[str, str]
    log_path: Path
    tls: TestTls | None
    options: tuple[str, ...] = ()
    workers: int | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    _running: ExitStack | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Its base URL: ``https://`` when it serves TLS."""
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}"

    @property
    def command(self) -> list[str]:
        """Its command line."""
        return [venv_command(self.name), "serve", "--host", HOST, "--port", str(self.port)]

    def start(self) -> subprocess.Popen[bytes]:
        """Start the process and wait until it listens (and its workers have started).

        Returns:
            The process.
        """
        assert self._running is None, f"{self.name} is running already"
        env = {**(https_settings(self.name, self.tls) if self.tls else {}), **self.env}
        log_start = log_size(self.log_path)
        with ExitStack() as stack:
            process = stack.enter_context(
                run_process(
                    [*self.command, *self.options],
                    port=self.port,
                    env=env,
                    log_path=self.log_path,
                )
            )
            if self.workers is not None:
                wait_for_startups(self.log_path, self.workers, process, log_start=log_start)
            self._running, self.process = stack.pop_all(), process
        return process

    def stop(self) -> None:
        """Stop the process, if it runs, and wait until it has exited."""
        running, self._running = self._running, None
        if running is not None:
            running.close()

    @contextmanager
    def running(self) -> Iterator[subprocess.Popen[bytes]]:
        """Run the process until the block ends."""
        process = self.start()
        try:
            yield process
        finally:
            self.stop()


@dataclass(frozen=True)
class System:
    """The three services, each on its own port, with their data and logs in one folder.

    Attributes:
        auth: auth-service, over HTTPS.
        users: user-service, over HTTPS, calling auth-service.
        frontend: frontend-web, over plain HTTP (the browser's side), calling user-service.
        tls: The certificate both internal hops serve, and its CA.
        user_service_token: user-service's token for auth-service.
        frontend_token: frontend-web's token for user-service, which tests call it with.
    """

    auth: ServiceProcess
    users: ServiceProcess
    frontend: ServiceProcess
    tls: TestTls
    user_service_token: ClientToken
    frontend_token: ClientToken

    def as_frontend_web(self, *, timeout: float = 30) -> httpx.Client:
        """A client of user-service as frontend-web: its token, the test CA."""
        return httpx.Client(
            base_url=self.users.url,
            headers=self.frontend_token.headers,
            verify=verified(self.tls),
            timeout=timeout,
        )

    def account_status(self, account_id: int) -> int:
        """Ask user-service, not the page, whether account ``account_id`` exists."""
        with self.as_frontend_web() as users:
            return users.get(f"/accounts/{account_id}").status_code


def prepare_system(
    folder: Path, tls: TestTls, *, frontend_env: Mapping[str, str] | None = None
) -> System:
    """Make the system's databases (alice in auth-service's) and its clients' tokens; start nothing.

    Args:
        folder: Where the databases, tokens and logs go.
        tls: The certificate of both internal hops.
        frontend_env: Added to frontend-web's settings, after the defaults
            (``FRONTEND_WEB_RATE_LIMIT`` is :data:`UNREACHED_RATE_LIMIT`).

    Returns:
        The system, stopped.
    """
    auth_env = {"AUTH_SERVICE_DATABASE_URL": f"sqlite:///{folder / 'auth.db'}"}
    users_env = {"USER_SERVICE_DATABASE_URL": f"sqlite:///{folder / 'accounts.db'}"}
    add_user(auth_env, ALICE, ALICE_PASSWORD)
    user_service_token = add_client(AUTH_SERVICE, USER_SERVICE, auth_env, folder)
    frontend_token = add_client(USER_SERVICE, FRONTEND_WEB, users_env, folder)
    auth = ServiceProcess(AUTH_SERVICE, auth_env, folder / "auth-service.log", tls)
    users = ServiceProcess(
        USER_SERVICE,
        {**users_env, **caller_settings(TO_AUTH_SERVICE, auth.url, user_service_token, tls)},
        folder / "user-service.log",
        tls,
    )
    frontend = ServiceProcess(
        FRONTEND_WEB,
        {
            **caller_settings(TO_USER_SERVICE, users.url, frontend_token, tls),
            "FRONTEND_WEB_RATE_LIMIT": UNREACHED_RATE_LIMIT,
            **(frontend_env or {}),
        },
        folder / "frontend-web.log",
        None,
    )
    return System(auth, users, frontend, tls, user_service_token, frontend_token)


@contextmanager
def running_system(
    folder: Path,
    tls: TestTls,
    *,
    frontend_env: Mapping[str, str] | None = None,
    services: tuple[str, ...] = SERVICES,
) -> Iterator[System]:
    """Start the system (see :func:`prepare_system`), or some of its services; stop them at exit.

    Args:
        folder: Where the databases, tokens and logs go.
        tls: The certificate of both internal hops.
        frontend_env: Added to frontend-web's settings.
        services: Which to start, by name, in this order (callees first).

    Yields:
        The system.
    """
    system = prepare_system(folder, tls, frontend_env=frontend_env)
    by_name = {AUTH_SERVICE: system.auth, USER_SERVICE: system.users, FRONTEND_WEB: system.frontend}
    started = [by_name[name] for name in services]
    try:
        for service in started:
            service.start()
        yield system
    finally:
        for service in reversed(started):
            service.stop()
