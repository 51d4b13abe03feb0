"""Run the whole system on this machine: ``make run``.

Starts auth-service, user-service and frontend-web on their embedded defaults,
adds the demo user if absent, prints where everything is, and stops all three
on Ctrl-C. Ports are read from ``AUTH_SERVICE_PORT``, ``USER_SERVICE_PORT`` and
``FRONTEND_WEB_PORT`` (defaults 8001, 8000, 8080).

Both internal hops run over HTTPS: auth-service and user-service serve with a
certificate of a local CA made on the first run under ``var/tls/`` (see
``local_tls.py``), and their callers verify it against that CA. frontend-web
stays plain HTTP on the loopback address, for the browser. Each caller is a
registered client of the service it calls: every run gives user-service a
fresh token for auth-service, and frontend-web one for user-service
(``clients add``), kept under ``var/tokens/`` (readable by the owner only).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from auth_service.__main__ import EXIT_OK, EXIT_USER_EXISTS
from local_tls import DEFAULT_FOLDER, LocalTls, ensure_local_tls

HOST = "127.0.0.1"
TOKENS = Path("var/tokens")
DEMO_USER, DEMO_PASSWORD = "alice", "correct-horse-battery-staple"
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Service:
    """One service of the system, the setting that moves it, and how it is reached."""

    name: str
    port_setting: str
    default_port: int
    scheme: str

    @property
    def port(self) -> int:
        """The port this service is to listen on."""
        return int(os.environ.get(self.port_setting, self.default_port))

    @property
    def url(self) -> str:
        """The service's base URL."""
        return f"{self.scheme}://{HOST}:{self.port}"


AUTH = Service("auth-service", "AUTH_SERVICE_PORT", 8001, "https")
USER = Service("user-service", "USER_SERVICE_PORT", 8000, "https")
FRONTEND = Service("frontend-web", "FRONTEND_WEB_PORT", 8080, "http")
SERVICES = (AUTH, USER, FRONTEND)


def port_in_use(port: int) -> bool:
    """Tell whether something already listens on ``port``."""
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


def wait_until_listening(service: Service, process: subprocess.Popen[bytes]) -> None:
    """Wait for ``service`` to accept connections, or exit if its process dies."""
    deadline = time.monotonic() + 30
    while not port_in_use(service.port):
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{service.name} did not start on port {service.port}; see its log above")
        time.sleep(0.1)


def add_demo_user() -> None:
    """Add the demo user to auth-service's store unless it is there already."""
    result = subprocess.run(
        [BIN / "auth-service", "users", "add", DEMO_USER],
        input=f"{DEMO_PASSWORD}\n".encode(),
        check=False,
        capture_output=True,
    )
    if result.returncode not in {EXIT_OK, EXIT_USER_EXISTS}:
        sys.exit(f"could not add the demo user: {result.stderr.decode().strip()}")


def local_tls() -> LocalTls:
    """Make the local CA and the services' certificate, or reuse them; exit if neither can be."""
    try:
        return ensure_local_tls(DEFAULT_FOLDER)
    except OSError as error:
        sys.exit(f"could not make the local CA in {DEFAULT_FOLDER}: {error}")


def client_token(provider: str, client: str) -> Path:
    """Give ``client`` a fresh token for ``provider``, revoking its old ones; return its file."""
    command = BIN / provider
    subprocess.run([command, "clients", "remove", client], check=False, capture_output=True)
    made = subprocess.run(
        [command, "clients", "add", client], check=False, capture_output=True, text=True
    )
    if made.returncode != EXIT_OK:
        sys.exit(f"could not register {client} with {provider}: {made.stderr.strip()}")
    TOKENS.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = TOKENS / f"{client}-for-{provider}"
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(made.stdout, encoding="ascii")
    return path.resolve()


def token_settings() -> dict[str, str]:
    """The settings that give each caller its client token for the service it calls."""
    return {
        "USER_SERVICE_AUTH_TOKEN_FILE": str(client_token("auth-service", "user-service")),
        "FRONTEND_WEB_USER_SERVICE_TOKEN_FILE": str(client_token("user-service", "frontend-web")),
    }


def hop_settings(tls: LocalTls) -> dict[str, str]:
    """The settings that run both internal hops over HTTPS, verified against the local CA."""
    cert_file, key_file, ca_file = (
        str(path.resolve()) for path in (tls.cert_file, tls.key_file, tls.ca_file)
    )
    return {
        "AUTH_SERVICE_TLS_CERT_FILE": cert_file,
        "AUTH_SERVICE_TLS_KEY_FILE": key_file,
        "USER_SERVICE_TLS_CERT_FILE": cert_file,
        "USER_SERVICE_TLS_KEY_FILE": key_file,
        "USER_SERVICE_AUTH_URL": AUTH.url,
        "USER_SERVICE_AUTH_CA_FILE": ca_file,
        "FRONTEND_WEB_USER_SERVICE_URL": USER.url,
        "FRONTEND_WEB_USER_SERVICE_CA_FILE": ca_file,
    }


def describe(tls: LocalTls) -> str:
    """Say whether this run made the CA and the certificate or reused them."""
    return f"made: {' and '.join(tls.made)}" if tls.made else "reused"


def main() -> int:
    """Run the system until interrupted.

    Returns:
        The exit code: 0 after Ctrl-C, 1 if a service stopped by itself.
    """
    for service in SERVICES:
        if port_in_use(service.port):
            sys.exit(
                f"port {service.port} for {service.name} is in use: stop what holds it, "
                f"or set {service.port_setting} to another port"
            )
    tls = local_tls()
    add_demo_user()
    tokens = token_settings()
    # The runner's token files replace any token given in the environment.
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name not in {"USER_SERVICE_AUTH_TOKEN", "FRONTEND_WEB_USER_SERVICE_TOKEN"}
    }
    env = {**inherited, **hop_settings(tls), **tokens}
    frontend_token = Path(tokens["FRONTEND_WEB_USER_SERVICE_TOKEN_FILE"]).relative_to(Path.cwd())
    processes: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for service in SERVICES:
            process = subprocess.Popen(
                [BIN / service.name, "serve", "--host", HOST, "--port", str(service.port)],
                env=env,
                start_new_session=True,  # Ctrl-C reaches this runner only, which stops each once
            )
            processes.append(process)
            wait_until_listening(service, process)
        print(
            f"\nauth-service  {AUTH.url}\nuser-service  {USER.url}\nfrontend-web  {FRONTEND.url}\n"
            f"\nfrontend-web -> user-service -> auth-service over HTTPS, verified against the"
            f" local CA {tls.ca_file} ({describe(tls)}), each caller with its client token"
            f" from {TOKENS}/\n"
            f"\nOpen {FRONTEND.url} and sign up as {DEMO_USER} / {DEMO_PASSWORD}, or,"
            f" as frontend-web:\n"
            f"  curl --cacert {tls.ca_file} -X POST {USER.url}/accounts"
            f' -H "Authorization: Bearer $(cat {frontend_token})"'
            f" -H 'content-type: application/json' "
            f"""-d '{{"username":"{DEMO_USER}","password":"{DEMO_PASSWORD}"}}'\n"""
            "\nCtrl-C stops all three.",
            flush=True,
        )
        while all(process.poll() is None for process in processes):
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
    else:
        print("a service stopped by itself; stopping the others", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    raise SystemExit(main())
