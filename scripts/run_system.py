"""Run the whole system on this machine: ``make run``.

Starts auth-service, user-service and frontend-web on their embedded defaults,
adds the demo user if absent, prints where everything is, and stops all three
on Ctrl-C. Ports are read from ``AUTH_SERVICE_PORT``, ``USER_SERVICE_PORT`` and
``FRONTEND_WEB_PORT`` (defaults 8001, 8000, 8080).
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

HOST = "127.0.0.1"
DEMO_USER, DEMO_PASSWORD = "alice", "correct-horse-battery-staple"
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Service:
    """One service of the system and the setting that moves it."""

    name: str
    port_setting: str
    default_port: int

    @property
    def port(self) -> int:
        """The port this service is to listen on."""
        return int(os.environ.get(self.port_setting, self.default_port))

    @property
    def url(self) -> str:
        """The service's base URL."""
        return f"http://{HOST}:{self.port}"


AUTH = Service("auth-service", "AUTH_SERVICE_PORT", 8001)
USER = Service("user-service", "USER_SERVICE_PORT", 8000)
FRONTEND = Service("frontend-web", "FRONTEND_WEB_PORT", 8080)
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
    add_demo_user()
    env = {
        **os.environ,
        "USER_SERVICE_AUTH_URL": AUTH.url,
        "FRONTEND_WEB_USER_SERVICE_URL": USER.url,
    }
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
            f"\nOpen {FRONTEND.url} and sign up as {DEMO_USER} / {DEMO_PASSWORD}, or:\n"
            f"  curl -X POST {USER.url}/accounts -H 'content-type: application/json' "
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
