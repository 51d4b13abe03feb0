"""``servicekit.http_client.HttpClient`` against real servers on 127.0.0.1.

Each server is a small asyncio TCP server scripted byte by byte, so a test
decides exactly what the client receives (chunks, half answers, garbage,
``Connection: close``, idle connections closed) and counts the connections
and requests the client makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self, cast

import pytest

from servicekit.http_client import (
    MAX_RESPONSE_BYTES,
    ConnectError,
    HttpClient,
    ProtocolError,
    Response,
    ResponseTimeoutError,
)
from tests.support.servers import HOST, free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

# Long enough for the loop to run connection_lost after a peer closes.
SETTLE = 0.05


@dataclass(frozen=True)
class Request:
    """A request as the server read it."""

    connection: int
    line: str
    headers: list[tuple[str, str]]
    body: bytes

    def values(self, name: str) -> list[str]:
        """Every value of the header ``name``, matched without regard to case."""
        return [value for key, value in self.headers if key.lower() == name.lower()]


class Peer:
    """One connection the server accepted, numbered from 1 in order of acceptance."""

    def __init__(
        self,
        number: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        requests: list[Request],
    ) -> None:
        self.number = number
        self.reader = reader
        self.writer = writer
        self.client_closed = asyncio.Event()
        self._requests = requests

    async def read_request(self) -> Request | None:
        """Read one request (its body by ``Content-Length``); None if the client closed first."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            self.client_closed.set()
            if error.partial:
                raise
            return None
        except OSError:
            self.client_closed.set()
            return None
        line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        headers = [(name, value) for name, _, value in (h.partition(": ") for h in header_lines)]
        lengths = [value for name, value in headers if name.lower() == "content-length"]
        body = await self.reader.readexactly(int(lengths[0])) if lengths else b""
        request = Request(self.number, line, headers, body)
        self._requests.append(request)
        return request

    async def send(self, *pieces: bytes, pause: float = 0.0) -> None:
        """Write ``pieces`` one after the other, ``pause`` seconds apart."""
        for index, piece in enumerate(pieces):
            if index and pause:
                await asyncio.sleep(pause)
            self.writer.write(piece)
            await self.writer.drain()

    async def sees_eof(self, within: float) -> bool:
        """Whether the client closes the connection within ``within`` seconds.

        The script must be reading requests on it: it is what notices the end.
        """
        try:
            async with asyncio.timeout(within):
                await self.client_closed.wait()
        except TimeoutError:
            return False
        return True


class ScriptedServer:
    """A TCP server on 127.0.0.1 that runs ``script`` for each connection it accepts."""

    def __init__(
        self,
        script: Callable[[Peer], Awaitable[None]],
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.accepted = 0
        self.open_now = 0
        self.most_open = 0
        self.peers: list[Peer] = []
        self.requests: list[Request] = []
        self.errors: list[Exception] = []
        self.port = 0
        self._script = script
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[object]] = set()

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{HOST}:{self.port}"

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
        await asyncio.sleep(0)  # let the transports finish closing
        assert not self.errors, f"the server's script failed: {self.errors!r}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        peer = Peer(self.accepted, reader, writer, self.requests)
        self.peers.append(peer)
        try:
            await self._script(peer)
        except asyncio.CancelledError:
            pass  # cancelled by __aexit__: end quietly, asyncio logs a cancelled callback
        except Exception as error:  # noqa: BLE001 (reported by __aexit__)
            self.errors.append(error)
        finally:
            self.open_now -= 1
            writer.close()
            self._tasks.discard(task)


def answer(body: bytes = b"ok", *, status: str = "200 OK", headers: Sequence[str] = ()) -> bytes:
    """An HTTP/1.1 answer with a ``Content-Length``."""
    head = [f"HTTP/1.1 {status}", *headers, f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def echo(request: Request) -> bytes:
    return answer(request.body)


def keep_alive(
    respond: Callable[[Request], bytes] = echo,
) -> Callable[[Peer], Awaitable[None]]:
    """A script answering every request on a connection until the client closes it."""

    async def script(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            await peer.send(respond(request))

    return script


def client_for(
    url: str,
    *,
    timeout: float = 1.0,
    max_connections: int = 100,
    ssl_context: ssl.SSLContext | None = None,
) -> HttpClient:
    return HttpClient(
        url,
        connect_timeout=1.0,
        timeout=timeout,
        max_connections=max_connections,
        ssl_context=ssl_context,
    )


@asynccontextmanager
async def opened(client: HttpClient) -> AsyncIterator[HttpClient]:
    await client.open()
    try:
        yield client
    finally:
        await client.close()
        await asyncio.sleep(0)  # let the transports finish closing


async def post(client: HttpClient, body: bytes = b"ping") -> Response:
    return await client.post("/call", body, headers={})


def exchange(
    script: Callable[[Peer], Awaitable[None]],
    *bodies: bytes,
    pause: float = 0.0,
    server_ssl: ssl.SSLContext | None = None,
    client_ssl: ssl.SSLContext | None = None,
) -> tuple[list[bytes], ScriptedServer]:
    """Post ``bodies`` one after another (``pause`` s apart) through one client to ``script``.

    Returns:
        The bodies of the answers, and the server, for what it saw.
    """

    async def main() -> tuple[list[bytes], ScriptedServer]:
        answers = []
        async with (
            ScriptedServer(script, ssl_context=server_ssl) as server,
            opened(client_for(server.url, ssl_context=client_ssl)) as client,
        ):
            for number, body in enumerate(bodies):
                if number and pause:
                    await asyncio.sleep(pause)
                answers.append((await post(client, body)).body)
        return answers, server

    return asyncio.run(main())


def test_a_200_answer_is_returned_and_the_request_sent_is_exact() -> None:
    sent = b'{"username": "ana", "password": "p\xc3\xa4ss"}'
    returned = b'{"valid": true}'
    headers = {"Content-Type": "application/json", "X-Request-ID": "req-1"}

    async def main() -> tuple[Response, list[Request], int]:
        respond = answer(returned, headers=["Content-Type: application/json", "X-Mixed-Case: Yes"])
        async with ScriptedServer(keep_alive(lambda _: respond)) as server:
            async with opened(client_for(server.url)) as client:
                response = await client.post("/auth/validate", sent, headers=headers)
            return response, server.requests, server.port

    response, requests, port = asyncio.run(main())

    assert response.status == 200
    assert dict(response.headers) == {
        "content-type": "application/json",
        "x-mixed-case": "Yes",
        "content-length": str(len(returned)),
    }
    assert response.body == returned
    [request] = requests
    assert request.line == "POST /auth/validate HTTP/1.1"
    assert sorted(request.headers) == sorted(
        [
            ("Host", f"127.0.0.1:{port}"),
            ("User-Agent", "servicekit"),
            ("Accept-Encoding", "identity"),
            ("Content-Type", "application/json"),
            ("X-Request-ID", "req-1"),
            ("Content-Length", str(len(sent))),
        ]
    )
    assert request.body == sent


def test_the_user_agent_is_the_one_given() -> None:
    async def main() -> list[Request]:
        async with ScriptedServer(keep_alive()) as server:
            client = HttpClient(server.url, connect_timeout=1, timeout=1, user_agent="user-service")
            async with opened(client):
                await post(client)
            return server.requests

    [request] = asyncio.run(main())
    assert request.values("User-Agent") == ["user-service"]


def test_an_empty_body_is_sent_with_a_zero_content_length() -> None:
    async def main() -> tuple[Response, list[Request]]:
        async with ScriptedServer(keep_alive()) as server:
            async with opened(client_for(server.url)) as client:
                response = await post(client, b"")
            return response, server.requests

    response, [request] = asyncio.run(main())
    assert request.values("Content-Length") == ["0"]
    assert request.body == b""
    assert response.body == b""


@pytest.mark.parametrize("base_path", ["/prefix", "/prefix/"])
def test_the_base_url_path_prefixes_the_path(base_path: str) -> None:
    async def main() -> list[Request]:
        async with ScriptedServer(keep_alive()) as server:
            async with opened(client_for(server.url + base_path)) as client:
                await client.post("/auth/validate", b"{}", headers={})
            return server.requests

    [request] = asyncio.run(main())
    assert request.line == "POST /prefix/auth/validate HTTP/1.1"


def test_sequential_calls_reuse_one_connection() -> None:
    bodies, server = exchange(keep_alive(), *(b"call %d" % n for n in range(5)))

    assert bodies == [b"call %d" % n for n in range(5)]
    assert server.accepted == 1
    assert [request.connection for request in server.requests] == [1] * 5


def test_answers_of_any_status_are_returned() -> None:
    answers = iter(
        [
            answer(b"busy", status="503 Service Unavailable", headers=["Retry-After: 3"]),
            answer(b"", status="204 No Content"),
            answer(b"slow down", status="429 Too Many Requests"),
        ]
    )

    async def main() -> list[Response]:
        async with (
            ScriptedServer(keep_alive(lambda _: next(answers))) as server,
            opened(client_for(server.url)) as client,
        ):
            return [await post(client) for _ in range(3)]

    busy, empty, limited = asyncio.run(main())
    assert (busy.status, busy.headers["retry-after"], busy.body) == (503, "3", b"busy")
    assert (empty.status, empty.body) == (204, b"")
    assert (limited.status, limited.body) == (429, b"slow down")


def test_header_names_are_lower_cased_and_the_last_repeated_value_wins() -> None:
    respond = answer(headers=["X-Thing: one", "x-THING: two", "CONTENT-TYPE: text/plain"])

    async def main() -> Response:
        async with (
            ScriptedServer(keep_alive(lambda _: respond)) as server,
            opened(client_for(server.url)) as client,
        ):
            return await post(client)

    response = asyncio.run(main())
    assert response.headers["x-thing"] == "two"
    assert response.headers["content-type"] == "text/plain"
    assert set(response.headers) == {"x-thing", "content-type", "content-length"}


def test_a_connection_close_answer_is_returned_and_the_next_call_reconnects() -> None:
    # The server says "Connection: close" but leaves the socket open and would
    # answer another request on it: only the client can drop the connection.
    async def main() -> tuple[list[Response], ScriptedServer, bool]:
        bye = answer(b"bye", headers=["Connection: close"])
        script = keep_alive(lambda request: bye if request.body == b"1" else echo(request))
        async with ScriptedServer(script) as server:
            async with opened(client_for(server.url)) as client:
                responses = [await post(client, b"1")]
                closed_first = await server.peers[0].sees_eof(0.5)
                responses.append(await post(client, b"2"))
            return responses, server, closed_first

    (first, second), server, closed_first = asyncio.run(main())
    assert (first.status, first.headers["connection"], first.body) == (200, "close", b"bye")
    assert second.body == b"2"
    assert closed_first, "the client kept the connection the server asked to close"
    assert [request.connection for request in server.requests] == [1, 2]


def test_an_http_1_0_answer_is_not_kept_alive() -> None:
    async def answer_in_http_1_0(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            body = request.body
            await peer.send(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    bodies, server = exchange(answer_in_http_1_0, b"a", b"b")
    assert bodies == [b"a", b"b"]
    assert [request.connection for request in server.requests] == [1, 2]


def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    async def answer_once(peer: Peer) -> None:
        request = await peer.read_request()
        assert request is not None
        await peer.send(echo(request))

    # After SETTLE, the server has closed the first connection.
    bodies, server = exchange(answer_once, b"first", b"second", pause=SETTLE)
    assert bodies == [b"first", b"second"]
    assert [request.connection for request in server.requests] == [1, 2]


def test_unsolicited_bytes_on_an_idle_connection_drop_it() -> None:
    stray = answer(b"stray")

    async def answer_then_babble(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            await peer.send(echo(request))
            if peer.number == 1:
                await asyncio.sleep(0.01)
                await peer.send(stray)

    bodies, server = exchange(answer_then_babble, b"first", b"second", pause=SETTLE)
    assert bodies == [b"first", b"second"]
    assert [request.connection for request in server.requests] == [1, 2]


def test_a_chunked_answer_is_decoded_into_one_body() -> None:
    alphabet = b"abcdefghijklmnopqrstuvwxyz"  # 0x1a bytes: a chunk size of two hex digits
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
        b"5\r\nHello\r\n"
        b"2;note=x\r\n, \r\n"
        b"1A\r\n" + alphabet + b"\r\n"
        b"0\r\n\r\n"
    )

    async def main() -> tuple[list[Response], ScriptedServer]:
        async with (
            ScriptedServer(keep_alive(lambda r: chunked if r.body == b"1" else echo(r))) as server,
            opened(client_for(server.url)) as client,
        ):
            responses = [await post(client, b"1"), await post(client, b"2")]
        return responses, server

    (chunked_response, after), server = asyncio.run(main())
    assert chunked_response.status == 200
    assert chunked_response.headers["transfer-encoding"] == "chunked"
    assert chunked_response.body == b"Hello, " + alphabet
    # The whole chunked answer was consumed: the connection serves the next call.
    assert after.body == b"2"
    assert server.accepted == 1


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param(
            [b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 11\r\n\r\n", b"hel", b"lo wo", b"rld"],
            id="content-length",
        ),
        pytest.param(
            [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"5\r\nhel",
                b"lo\r\n",
                b"6",
                b"\r\n world\r\n0\r",
                b"\n\r\n",
            ],
            id="chunked",
        ),
    ],
)
def test_an_answer_in_several_segments_is_reassembled(pieces: list[bytes]) -> None:
    async def slow_then_echo(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            if request.body == b"slow":
                await peer.send(*pieces, pause=0.02)
            else:
                await peer.send(echo(request))

    bodies, server = exchange(slow_then_echo, b"slow", b"next")
    assert bodies == [b"hello world", b"next"]
    assert server.accepted == 1


def test_an_answer_just_below_the_size_limit_is_returned() -> None:
    big = bytes(range(256)) * ((MAX_RESPONSE_BYTES - 1024) // 256)

    async def main() -> Response:
        async with (
            ScriptedServer(keep_alive(lambda _: answer(big))) as server,
            opened(client_for(server.url)) as client,
        ):
            return await post(client)

    assert asyncio.run(main()).body == big


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_answer_over_the_size_limit_raises_protocol_error(*, chunked: bool) -> None:
    big = b"x" * (MAX_RESPONSE_BYTES + 1)
    if chunked:
        too_big = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
            len(big),
            big,
        )
    else:
        too_big = answer(big)

    async def big_then_echo(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            if request.body == b"big":
                with contextlib.suppress(OSError):  # the client hangs up half-way
                    await peer.send(too_big)
            else:
                await peer.send(echo(request))

    async def main() -> tuple[bytes, ScriptedServer]:
        async with (
            ScriptedServer(big_then_echo) as server,
            opened(client_for(server.url)) as client,
        ):
            with pytest.raises(ProtocolError, match="over"):
                await post(client, b"big")
            after = await post(client, b"after")
        return after.body, server

    after, server = asyncio.run(main())
    assert after == b"after"
    assert [request.connection for request in server.requests] == [1, 2]


@pytest.mark.parametrize(
    ("bad", "then_close"),
    [
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n", False, id="not-http"),
        pytest.param(b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n", False, id="bad-status"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", False, id="bad-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Le", True, id="half-headers"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf!", True, id="half-body"),
        pytest.param(b"", True, id="no-answer"),
    ],
)
def test_a_broken_answer_raises_protocol_error_and_the_connection_is_dropped(
    bad: bytes, *, then_close: bool
) -> None:
    async def bad_once(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            if peer.number > 1:
                await peer.send(echo(request))
                continue
            await peer.send(bad)
            if then_close:
                return

    async def main() -> tuple[float, bytes, ScriptedServer, bool]:
        async with (
            ScriptedServer(bad_once) as server,
            opened(client_for(server.url, timeout=1.5)) as client,
        ):
            started = time.monotonic()
            with pytest.raises(ProtocolError):
                await post(client, b"bad")
            took = time.monotonic() - started
            # When the server did not close it, the client must have.
            closed_first = then_close or await server.peers[0].sees_eof(0.5)
            after = await post(client, b"after")
        return took, after.body, server, closed_first

    took, after, server, closed_first = asyncio.run(main())
    assert took < 0.5, "the client waited for more instead of failing at once"
    assert closed_first, "the client kept the broken connection open"
    assert after == b"after"
    assert [request.connection for request in server.requests] == [1, 2]


def test_nobody_listening_raises_connect_error() -> None:
    async def main() -> None:
        async with opened(client_for(f"http://{HOST}:{free_port()}")) as client:
            await post(client)

    with pytest.raises(ConnectError, match="could not connect") as caught:
        asyncio.run(main())
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_no_answer_in_time_raises_response_timeout_and_the_connection_is_dropped() -> None:
    # Were the timed-out connection reused, the late answer would come while the
    # next call waits on it, and be taken for that call's answer.
    async def late_on_first(peer: Peer) -> None:
        with contextlib.suppress(OSError):
            while (request := await peer.read_request()) is not None:
                if request.body == b"slow":
                    await asyncio.sleep(0.4)
                    await peer.send(answer(b"late"))
                else:
                    await peer.send(answer(b"fresh"))

    async def main() -> tuple[float, bytes, ScriptedServer, bool]:
        async with (
            ScriptedServer(late_on_first) as server,
            opened(client_for(server.url, timeout=0.2)) as client,
        ):
            started = time.monotonic()
            with pytest.raises(ResponseTimeoutError):
                await post(client, b"slow")
            took = time.monotonic() - started
            after = await post(client, b"fast")
            # Its script sleeps until 0.4 s, then reads again and sees the end.
            closed_first = await server.peers[0].sees_eof(0.5)
        return took, after.body, server, closed_first

    took, after, server, closed_first = asyncio.run(main())
    assert 0.19 < took < 0.35
    assert closed_first, "the client kept the timed-out connection open"
    assert after == b"fresh"
    assert [request.connection for request in server.requests] == [1, 2]


def test_max_connections_bounds_the_connections_open_at_once() -> None:
    in_flight = 0
    most_in_flight = 0

    async def hold_then_echo(peer: Peer) -> None:
        nonlocal in_flight, most_in_flight
        while (request := await peer.read_request()) is not None:
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
            await asyncio.sleep(0.2)
            in_flight -= 1
            await peer.send(echo(request))

    async def main() -> tuple[list[bytes], float, ScriptedServer]:
        async with (
            ScriptedServer(hold_then_echo) as server,
            opened(client_for(server.url, max_connections=2)) as client,
        ):
            started = time.monotonic()
            responses = await asyncio.gather(*(post(client, b"%d" % n) for n in range(5)))
            took = time.monotonic() - started
        return [response.body for response in responses], took, server

    bodies, took, server = asyncio.run(main())
    assert bodies == [b"%d" % n for n in range(5)]
    assert server.most_open == 2
    assert most_in_flight == 2
    assert server.accepted == 2  # the two connections served all five calls
    assert took >= 0.55  # three rounds of 0.2 s


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Bad": "a\rb"},
        {"X-Bad": "a\nb"},
        {"X-Bad": "a\r\nX-Injected: 1"},
        {"X-Bad": "a\0b"},
        {"X-Bad\r\nX-Injected": "1"},
        {"X-Bad\n": "1"},
        {"X-Bad\0": "1"},
    ],
)
def test_a_header_with_a_line_break_or_nul_raises_value_error_before_sending(
    headers: dict[str, str],
) -> None:
    async def main() -> tuple[int, int, ScriptedServer]:
        async with ScriptedServer(keep_alive()) as server, opened(client_for(server.url)) as client:
            with pytest.raises(ValueError, match="line break or a NUL"):
                await client.post("/call", b"bad", headers=headers)
            await asyncio.sleep(SETTLE)
            accepted_before = server.accepted  # no connection was made for it
            await post(client, b"good")
            with pytest.raises(ValueError, match="line break or a NUL"):
                await client.post("/call", b"bad", headers=headers)
            await asyncio.sleep(SETTLE)
            requests_after = len(server.requests)  # nothing was written on the idle one
            await post(client, b"good again")
        return accepted_before, requests_after, server

    accepted_before, requests_after, server = asyncio.run(main())
    assert accepted_before == 0
    assert requests_after == 1
    assert [request.body for request in server.requests] == [b"good", b"good again"]
    assert server.accepted == 1


@pytest.mark.parametrize(
    "path", ["call", "/call HTTP/1.1\r\nX-Injected: 1\r\nY:", "/a b", "/a\tb", "/a\0b"]
)
def test_a_path_not_starting_with_a_slash_or_holding_a_space_raises_value_error(
    path: str,
) -> None:
    async def main() -> ScriptedServer:
        async with ScriptedServer(keep_alive()) as server, opened(client_for(server.url)) as client:
            with pytest.raises(ValueError, match="does not start with /"):
                await client.post(path, b"bad", headers={})
            await asyncio.sleep(SETTLE)
        return server

    assert asyncio.run(main()).accepted == 0


@pytest.mark.parametrize("user_agent", ["ua\r\nX-Evil: 1", "ua\n", "ua\0"])
def test_a_user_agent_with_a_line_break_or_nul_raises_value_error(user_agent: str) -> None:
    with pytest.raises(ValueError, match="line break or a NUL"):
        HttpClient("http://127.0.0.1:1", connect_timeout=1, timeout=1, user_agent=user_agent)


def test_a_call_before_open_raises_runtime_error() -> None:
    async def main() -> ScriptedServer:
        async with ScriptedServer(keep_alive()) as server:
            with pytest.raises(RuntimeError, match="not open"):
                await post(client_for(server.url))
            await asyncio.sleep(SETTLE)
        return server

    assert asyncio.run(main()).accepted == 0


def test_a_call_after_close_raises_runtime_error() -> None:
    async def main() -> ScriptedServer:
        async with ScriptedServer(keep_alive()) as server:
            client = client_for(server.url)
            async with opened(client):
                await post(client)
            with pytest.raises(RuntimeError, match="not open"):
                await post(client)
            await asyncio.sleep(SETTLE)
        return server

    server = asyncio.run(main())
    assert len(server.requests) == 1
    assert server.accepted == 1


def test_close_closes_the_idle_connections() -> None:
    async def main() -> list[bool]:
        async with ScriptedServer(keep_alive()) as server:
            client = client_for(server.url)
            await client.open()
            await asyncio.gather(post(client), post(client))  # two connections
            assert server.accepted == 2
            await client.close()
            return [await peer.sees_eof(0.5) for peer in server.peers]

    assert asyncio.run(main()) == [True, True]


@pytest.mark.parametrize(
    "base_url", ["ftp://x", "http://", "https://", "not a url", "", "127.0.0.1:8000", "/path"]
)
def test_an_invalid_base_url_raises_value_error(base_url: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        client_for(base_url)


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1, made by the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "c.pem", folder / "k.pem"
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
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

    bodies, server = exchange(
        keep_alive(), b"one", b"two", server_ssl=server_tls(certificate), client_ssl=trusting
    )

    assert server.url.startswith("https://127.0.0.1:")
    assert bodies == [b"one", b"two"]
    assert server.accepted == 1
    assert server.requests[0].values("Host") == [f"127.0.0.1:{server.port}"]


def test_tls_with_the_default_trust_refuses_a_self_signed_certificate(
    certificate: Certificate,
) -> None:
    async def main() -> ScriptedServer:
        async with (
            ScriptedServer(keep_alive(), ssl_context=server_tls(certificate)) as server,
            opened(client_for(server.url)) as client,
        ):
            with pytest.raises(ConnectError) as caught:
                await post(client)
            assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
        return server

    server = asyncio.run(main())
    assert server.requests == []


def test_plain_http_to_a_tls_server_raises_protocol_error(certificate: Certificate) -> None:
    async def main() -> None:
        async with ScriptedServer(keep_alive(), ssl_context=server_tls(certificate)) as server:
            plain = server.url.replace("https://", "http://")
            async with opened(client_for(plain, timeout=0.5)) as client:
                await post(client)

    with pytest.raises(ProtocolError):
        asyncio.run(main())


def test_bytes_after_the_answer_do_not_change_the_answer_returned() -> None:
    # The server sends a second, unasked-for answer in the same segment as the
    # first. The parser goes on into it, and its headers land in the dict the
    # first Response holds.
    both = answer(b"one", headers=["X-Which: first"]) + answer(b"xx", headers=["X-Which: stray"])

    async def main() -> Response:
        async with (
            ScriptedServer(keep_alive(lambda _: both)) as server,
            opened(client_for(server.url)) as client,
        ):
            return await post(client)

    response = asyncio.run(main())
    assert response.body == b"one"
    assert dict(response.headers) == {"x-which": "first", "content-length": "3"}


def test_bytes_after_the_answer_are_not_taken_for_the_next_answer() -> None:
    # The start of an unasked-for answer follows the first answer in the same
    # segment: the connection stays idle, and the next call's answer is read
    # as the rest of that stray one.
    first = answer(b"one") + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nsta"

    async def main() -> list[bytes]:
        respond = keep_alive(lambda r: first if r.body == b"1" else answer(b"two"))
        async with ScriptedServer(respond) as server, opened(client_for(server.url)) as client:
            one = await post(client, b"1")
            await asyncio.sleep(SETTLE)
            two = await post(client, b"2")
        return [one.body, two.body]

    assert asyncio.run(main()) == [b"one", b"two"]


def test_an_interim_1xx_answer_is_skipped() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"final")

    async def main() -> Response:
        async with (
            ScriptedServer(keep_alive(lambda _: interim)) as server,
            opened(client_for(server.url)) as client,
        ):
            return await post(client)

    response = asyncio.run(main())
    assert (response.status, response.body) == (200, b"final")


def test_an_answer_delimited_by_closing_the_connection_is_returned() -> None:
    async def answer_until_close(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")

    async def main() -> Response:
        async with (
            ScriptedServer(answer_until_close) as server,
            opened(client_for(server.url)) as client,
        ):
            return await post(client)

    assert asyncio.run(main()).body == b"until the end"


def test_a_connection_in_use_during_close_is_closed_when_its_call_ends() -> None:
    async def hold_then_echo(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            await asyncio.sleep(0.1)
            await peer.send(echo(request))

    async def main() -> tuple[bytes, bool]:
        async with ScriptedServer(hold_then_echo) as server:
            client = client_for(server.url)
            await client.open()
            call = asyncio.create_task(post(client, b"in flight"))
            await asyncio.sleep(0.05)
            await client.close()
            response = await call
            closed = await server.peers[0].sees_eof(0.3)
            await client.close()  # what the first close() missed, so the test leaks nothing
            await asyncio.sleep(0)
        return response.body, closed

    body, closed = asyncio.run(main())
    assert body == b"in flight"
    assert closed, "the connection stayed open after close() and the end of its call"


def test_the_client_opens_and_closes_in_async_with() -> None:
    async def main() -> bytes:
        async with (
            ScriptedServer(keep_alive()) as server,
            # A cast, so the test type-checks both before and after the fix.
            cast("AbstractAsyncContextManager[HttpClient]", client_for(server.url)) as client,
        ):
            return (await post(client)).body

    assert asyncio.run(main()) == b"ping"
