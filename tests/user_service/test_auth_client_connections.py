"""AuthClient's connections to auth-service, against scripted asyncio servers on 127.0.0.1.

Each server runs a script per connection it accepts, so a test decides what
the client receives (an answer, nothing, a connection closed under it) and
sees the connections and requests the client makes. Connection attempts that
never reach a server are seen in the kernel's table of TCP sockets.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Self

import httpx
import pytest

from servicekit.deadlines import deadline
from tests.support.log_scan import register_secret
from tests.support.servers import HOST, free_port
from user_service import create_app
from user_service.accounts import InMemoryAccountStore
from user_service.auth_client import (
    AuthClient,
    AuthServiceBadResponseError,
    AuthServiceTimeoutError,
    AuthServiceUnavailableError,
)
from user_service.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

USERNAME = "alice"
PASSWORD = "correct horse battery staple"
SLOW = "correct-horse-battery-staple"
VERDICT = b'{"valid": true, "subject": "alice"}'
TCP_TABLE = Path("/proc/net/tcp")
SYN_SENT = "02"


@dataclass(frozen=True)
class Request:
    """A request as the server read it, on the connection numbered ``connection``."""

    connection: int
    headers: dict[str, str]
    body: bytes

    @property
    def password(self) -> str:
        password: str = json.loads(self.body)["password"]
        return password


class Peer:
    """One connection the server accepted, numbered from 1 in order of acceptance.

    Attributes:
        read: How many requests were read on it so far.
    """

    def __init__(
        self,
        number: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        record: Callable[[Request], None],
    ) -> None:
        self.number = number
        self.read = 0
        self.writer = writer
        self.client_closed = asyncio.Event()
        self._reader = reader
        self._record = record

    async def read_request(self) -> Request | None:
        """Read one request; ``None`` once the client has closed the connection."""
        try:
            head = await self._reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, OSError):
            self.client_closed.set()
            return None
        lines = head[:-4].decode("latin-1").split("\r\n")[1:]
        headers = {
            name.lower(): value for name, _, value in (line.partition(": ") for line in lines)
        }
        body = await self._reader.readexactly(int(headers.get("content-length", "0")))
        request = Request(self.number, headers, body)
        self.read += 1
        self._record(request)
        return request

    async def answer(self, body: bytes = VERDICT, *, status: str = "200 OK") -> None:
        """Send a JSON answer with a ``Content-Length``."""
        head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        self.writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await self.writer.drain()

    async def wait_until_client_closes(self) -> None:
        """Read on, answering nothing, until the client closes the connection."""
        while await self.read_request() is not None:
            pass


class ScriptedServer:
    """A TCP server on 127.0.0.1 that runs ``script`` for each connection it accepts."""

    def __init__(
        self,
        script: Callable[[Peer], Awaitable[None]],
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.peers: list[Peer] = []
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []
        self.port = 0
        self._script = script
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._arrival = asyncio.Event()

    @property
    def url(self) -> str:
        scheme = "http" if self._ssl is None else "https"
        return f"{scheme}://{HOST}:{self.port}"

    @property
    def accepted(self) -> int:
        return len(self.peers)

    async def until_requests(self, count: int, within: float = 5.0) -> None:
        """Return once ``count`` requests have been read, or fail after ``within`` seconds."""
        async with asyncio.timeout(within):
            while len(self.requests) < count:
                self._arrival.clear()
                await self._arrival.wait()

    def _record(self, request: Request) -> None:
        self.requests.append(request)
        self._arrival.set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, HOST, 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        assert not self.errors, f"the server's script failed: {self.errors!r}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = Peer(len(self.peers) + 1, reader, writer, self._record)
        self.peers.append(peer)
        try:
            await self._script(peer)
        except asyncio.CancelledError:
            pass  # cancelled by __aexit__
        except Exception as error:  # noqa: BLE001 (reported by __aexit__)
            self.errors.append(error)
        finally:
            writer.close()
            self._tasks.discard(task)


async def answering(peer: Peer) -> None:
    """Answer every request on the connection with a verdict, until the client closes it."""
    while await peer.read_request() is not None:
        await peer.answer()


def client_for(url: str, **options: object) -> AuthClient:
    settings: dict[str, object] = {"connect_timeout": 1.0, "timeout": 5.0, "backoff": 0.01}
    return AuthClient(url, **(settings | options))  # type: ignore[arg-type]


async def validate(client: AuthClient, password: str = PASSWORD) -> bool:
    return await client.validate_credentials(USERNAME, password)


async def wait_for(event: asyncio.Event, within: float = 5.0) -> bool:
    """Whether ``event`` is set within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            await event.wait()
    except TimeoutError:
        return False
    return True


def test_sequential_calls_share_one_keep_alive_connection() -> None:
    async def main() -> tuple[list[bool], ScriptedServer]:
        async with ScriptedServer(answering) as server, client_for(server.url) as client:
            verdicts = [await validate(client) for _ in range(3)]
        return verdicts, server

    verdicts, server = asyncio.run(main())
    assert verdicts == [True, True, True]
    assert server.accepted == 1
    assert [request.connection for request in server.requests] == [1, 1, 1]


def test_a_connection_idle_longer_than_keepalive_is_closed_and_not_reused() -> None:
    keepalive = 0.3

    async def main() -> tuple[bool, float, ScriptedServer]:
        async with (
            ScriptedServer(answering) as server,
            client_for(server.url, keepalive=keepalive) as client,
        ):
            await validate(client)
            idle_since = time.monotonic()
            closed = await wait_for(server.peers[0].client_closed, within=2.5)
            idle = time.monotonic() - idle_since
            await validate(client)
        return closed, idle, server

    closed, idle, server = asyncio.run(main())
    assert closed, "the client kept an idle connection open long after its keep-alive"
    assert idle >= keepalive * 0.9, "the client closed the connection before its keep-alive"
    assert server.accepted == 2
    assert [request.connection for request in server.requests] == [1, 2]


def test_the_keepalive_setting_reaches_the_auth_client() -> None:
    # The default keep-alive (4 s) would keep the connection past the wait below.
    async def main() -> tuple[int, bool]:
        async with ScriptedServer(answering) as server:
            settings = Settings(auth_url=server.url, auth_keepalive_seconds=0.3)
            store = InMemoryAccountStore()
            app = create_app(settings, account_store=store)
            transport = httpx.ASGITransport(app=app)
            caller = register_secret(await store.clients.issue("frontend-web"))
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://user-service") as http,
            ):
                response = await http.post(
                    "/accounts",
                    json={"username": USERNAME, "password": PASSWORD},
                    headers={"Authorization": f"Bearer {caller}"},
                )
                closed = await wait_for(server.peers[0].client_closed, within=2.5)
        return response.status_code, closed

    status, closed = asyncio.run(main())
    assert status == 201
    assert closed, "USER_SERVICE_AUTH_KEEPALIVE_SECONDS did not reach the AuthClient"


def test_waiting_for_a_pooled_connection_counts_against_the_time_limit() -> None:
    limit = 0.3
    release = asyncio.Event()

    async def hold_slow_calls(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            if request.password == SLOW:
                await release.wait()
            await peer.answer()

    async def second_call(client: AuthClient) -> float:
        # As ServiceMiddleware does for a caller that will wait `limit` seconds.
        deadline.set(time.monotonic() + limit)
        started = time.monotonic()
        with pytest.raises(AuthServiceTimeoutError):
            await validate(client)
        return time.monotonic() - started

    async def main() -> tuple[float, bool, ScriptedServer]:
        async with (
            ScriptedServer(hold_slow_calls) as server,
            client_for(server.url, max_connections=1, max_in_flight=2) as client,
        ):
            first = asyncio.create_task(validate(client, SLOW))
            await server.until_requests(1)
            took = await asyncio.create_task(second_call(client))
            first_still_running = not first.done()
            release.set()
            assert await first is True
        return took, first_still_running, server

    took, first_still_running, server = asyncio.run(main())
    assert first_still_running, "the second call ended only after the first"
    assert limit * 0.9 <= took < limit + 1.0
    assert [request.password for request in server.requests] == [SLOW]


@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_reused_connection_closed_before_answering_is_retried_once(how: str) -> None:
    async def close_the_second_request(peer: Peer) -> None:
        while await peer.read_request() is not None:
            if peer.number == 1 and peer.read == 2:
                if how == "reset":
                    peer.writer.transport.abort()
                return
            await peer.answer()

    async def main() -> tuple[list[bool], ScriptedServer]:
        async with (
            ScriptedServer(close_the_second_request) as server,
            client_for(server.url) as client,
        ):
            verdicts = [await validate(client), await validate(client)]
        return verdicts, server

    verdicts, server = asyncio.run(main())
    assert verdicts == [True, True]
    assert [request.connection for request in server.requests] == [1, 1, 2]


def test_a_fresh_connection_closed_before_answering_is_a_bad_response_not_retried() -> None:
    async def close_at_once(peer: Peer) -> None:
        await peer.read_request()

    async def main() -> ScriptedServer:
        async with ScriptedServer(close_at_once) as server, client_for(server.url) as client:
            with pytest.raises(AuthServiceBadResponseError, match="without answering"):
                await validate(client)
        return server

    server = asyncio.run(main())
    assert len(server.requests) == 1
    assert server.accepted == 1


def test_the_retry_after_a_reused_connection_closed_is_not_repeated() -> None:
    # The first call is answered; then every connection closes under its request.
    answered = False

    async def answer_only_the_first(peer: Peer) -> None:
        nonlocal answered
        while await peer.read_request() is not None:
            if answered:
                return
            answered = True
            await peer.answer()

    async def main() -> ScriptedServer:
        async with ScriptedServer(answer_only_the_first) as server, client_for(server.url) as c:
            await validate(c)
            with pytest.raises(AuthServiceBadResponseError, match="without answering"):
                await validate(c)
        return server

    server = asyncio.run(main())
    # The second call: once on the reused connection, once on a fresh one, no more.
    assert [request.connection for request in server.requests] == [1, 1, 2]


def test_a_connection_closed_half_way_through_the_answer_is_not_retried() -> None:
    async def cut_the_second_answer(peer: Peer) -> None:
        while await peer.read_request() is not None:
            if peer.read == 2:
                peer.writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{"valid"')
                await peer.writer.drain()
                return
            await peer.answer()

    async def main() -> ScriptedServer:
        async with ScriptedServer(cut_the_second_answer) as server, client_for(server.url) as c:
            await validate(c)
            with pytest.raises(AuthServiceBadResponseError):
                await validate(c)
        return server

    server = asyncio.run(main())
    assert [request.connection for request in server.requests] == [1, 1]


def test_a_read_timeout_is_not_retried() -> None:
    async def never_answer(peer: Peer) -> None:
        await peer.wait_until_client_closes()

    async def main() -> tuple[float, ScriptedServer]:
        async with (
            ScriptedServer(never_answer) as server,
            client_for(server.url, timeout=0.3, retries=2) as client,
        ):
            started = time.monotonic()
            with pytest.raises(AuthServiceTimeoutError):
                await validate(client)
            took = time.monotonic() - started
        return took, server

    took, server = asyncio.run(main())
    assert took < 1.5
    assert len(server.requests) == 1


def test_a_refused_connection_is_retried_with_backoff() -> None:
    # Two retries wait at least backoff/2 + backoff (the jitter's lower ends).
    backoff = 0.4
    url = f"http://{HOST}:{free_port()}"

    async def took(retries: int) -> float:
        async with client_for(url, retries=retries, backoff=backoff) as client:
            started = time.monotonic()
            with pytest.raises(AuthServiceUnavailableError):
                await validate(client)
            return time.monotonic() - started

    assert asyncio.run(took(retries=2)) >= backoff * 1.5
    assert asyncio.run(took(retries=0)) < backoff * 1.5


def test_retries_stop_when_the_time_limit_is_spent() -> None:
    # Five retries would wait at least 6 s; the limit of the call is 0.5 s.
    url = f"http://{HOST}:{free_port()}"

    async def main() -> float:
        async with client_for(url, timeout=0.5, retries=5, backoff=0.4) as client:
            started = time.monotonic()
            with pytest.raises(AuthServiceUnavailableError):
                await validate(client)
            return time.monotonic() - started

    assert asyncio.run(main()) < 2.0


def _attempts_toward(port: int) -> set[int]:
    """The local ports of this machine's TCP sockets still connecting to ``port``."""
    ports = set()
    for line in TCP_TABLE.read_text().splitlines()[1:]:
        _, local, remote, state, *_ = line.split()
        if state == SYN_SENT and int(remote.rsplit(":", 1)[1], 16) == port:
            ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.parametrize("retries", [0, 2])
def test_a_connect_timeout_is_retried_at_most_retries_times(retries: int) -> None:
    # A listener whose only backlog place is taken: the kernel drops the SYNs
    # of every later connection, so each attempt times out while connecting.
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        with socket.create_connection((HOST, port), timeout=2):

            async def main() -> tuple[set[int], float]:
                seen: set[int] = set()
                async with client_for(
                    f"http://{HOST}:{port}", connect_timeout=0.2, timeout=10, retries=retries
                ) as client:
                    started = time.monotonic()
                    call = asyncio.create_task(validate(client))
                    while not call.done():
                        seen |= _attempts_toward(port)
                        await asyncio.sleep(0.005)
                    with pytest.raises(AuthServiceUnavailableError, match="in time"):
                        await call
                    return seen, time.monotonic() - started

            attempts, took = asyncio.run(main())

    assert len(attempts) == retries + 1
    assert took < 0.2 * (retries + 1) + 2.0


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1, made by the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert)),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return Certificate(cert, key)


def server_tls(certificate: Certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert, certificate.key)
    return context


def test_tls_with_a_context_trusting_the_certificate(certificate: Certificate) -> None:
    trusting = ssl.create_default_context(cafile=certificate.cert)

    async def main() -> tuple[list[bool], ScriptedServer]:
        async with (
            ScriptedServer(answering, ssl_context=server_tls(certificate)) as server,
            client_for(server.url, ssl_context=trusting) as client,
        ):
            verdicts = [await validate(client), await validate(client)]
        return verdicts, server

    verdicts, server = asyncio.run(main())
    assert server.url.startswith("https://")
    assert verdicts == [True, True]
    assert server.accepted == 1


def test_tls_with_the_default_trust_refuses_a_self_signed_certificate(
    certificate: Certificate,
) -> None:
    async def main() -> tuple[list[BaseException], ScriptedServer]:
        async with (
            ScriptedServer(answering, ssl_context=server_tls(certificate)) as server,
            client_for(server.url, retries=0) as client,
        ):
            with pytest.raises(AuthServiceUnavailableError) as caught:
                await validate(client)
            causes = []
            cause = caught.value.__cause__
            while cause is not None:
                causes.append(cause)
                cause = cause.__cause__
        return causes, server

    causes, server = asyncio.run(main())
    assert any(isinstance(cause, ssl.SSLCertVerificationError) for cause in causes), causes
    assert server.requests == []
