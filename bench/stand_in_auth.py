"""A stand-in for auth-service: ``POST /auth/validate`` says yes after a fixed latency.

Run it as ``python -m bench.stand_in_auth --port P --latency-ms 10 [--token-file FILE ...]``.

As auth-service, it answers only callers that present a client token it
knows (``Authorization: Bearer TOKEN``), one per ``--token-file`` (see
:mod:`bench.clients`), and refuses any other with auth-service's ``401``.
Without ``--token-file`` it answers anyone, as services did before client
tokens (``bench/compare.py`` measures such revisions too).

It is a bare asyncio protocol rather than an ASGI app because it shares the
machine's cores with the service under test and the load generator: the less
CPU it takes per answer, the less it distorts what is measured. It speaks just
enough HTTP/1.1 for a keep-alive client that sends one request at a time per
connection (aiohttp, httpx, requests): a ``Content-Length`` body, no chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING, cast

import uvloop
from tests.support.processes import HOST

from bench.clients import read_token

if TYPE_CHECKING:
    from collections.abc import Collection

_HEADERS_END = b"\r\n\r\n"
_MAX_HEAD_BYTES = 64 * 1024


def answer(body: bytes) -> bytes:
    """Return the whole HTTP response to a ``POST /auth/validate`` with ``body``.

    The verdict is always valid, with the username as ``subject``, as auth-service
    answers; a body that is not a JSON object with a ``username`` gets ``400``.
    """
    try:
        request = json.loads(body)
        subject = request["username"]
    except (ValueError, KeyError, TypeError):
        return _response(b"400 Bad Request", b'{"detail":"bad request"}')
    payload = json.dumps({"valid": True, "subject": subject}, separators=(",", ":"))
    return _response(b"200 OK", payload.encode())


def _response(status: bytes, payload: bytes, headers: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: application/json\r\n"
        + headers
        + b"content-length: "
        + str(len(payload)).encode()
        + b"\r\n\r\n"
        + payload
    )


_REFUSED = _response(
    b"401 Unauthorized",
    b'{"detail":"The client token is not valid: unknown or revoked.","code":"invalid_token"}',
    b'www-authenticate: Bearer realm="auth-service", error="invalid_token"\r\n',
)
"""auth-service's answer to a caller without a token it knows."""


def _head_fields(head: bytes) -> tuple[int, bytes | None]:
    """Return the ``Content-Length`` of a request's head (0 if none), and its ``Authorization``."""
    length, authorization = 0, None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"authorization":
            authorization = value.strip()
    return length, authorization


def is_known(authorization: bytes | None, accepted: Collection[bytes]) -> bool:
    """Tell whether ``authorization`` presents one of the ``accepted`` headers (any, if none)."""
    if not accepted:
        return True
    if authorization is None:
        return False
    # Every one compared, in constant time each: which one matched is not told by the timing.
    matches = [hmac.compare_digest(authorization, known) for known in accepted]
    return any(matches)


class _Connection(asyncio.Protocol):
    """One client connection: parses requests and answers each after the latency."""

    def __init__(self, latency: float, accepted: Collection[bytes]) -> None:
        self._latency = latency
        self._accepted = accepted
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transports behave as asyncio.Transport without subclassing it.
        self._transport = cast("asyncio.Transport", transport)

    def connection_lost(self, exc: Exception | None) -> None:
        del exc
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(_HEADERS_END)
            if end < 0:
                if len(self._buffer) > _MAX_HEAD_BYTES:
                    self._close()
                return
            try:
                length, authorization = _head_fields(bytes(self._buffer[:end]))
            except ValueError:
                self._close()
                return
            start = end + len(_HEADERS_END)
            if len(self._buffer) < start + length:
                return
            body = bytes(self._buffer[start : start + length])
            del self._buffer[: start + length]
            response = answer(body) if is_known(authorization, self._accepted) else _REFUSED
            if self._latency > 0:
                # Equal delays fire in the order they were scheduled, so answers keep their order.
                asyncio.get_running_loop().call_later(self._latency, self._send, response)
            else:
                self._send(response)

    def _send(self, response: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(response)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def serve(port: int, latency: float, tokens: Collection[str] = ()) -> None:
    """Answer on ``port`` until SIGTERM or SIGINT.

    Args:
        port: The port to listen on, on the loopback interface.
        latency: Seconds to wait before each answer.
        tokens: The client tokens answered; none: any caller is.
    """
    accepted = frozenset(f"Bearer {token}".encode() for token in tokens)
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stopped.set)
    server = await loop.create_server(
        lambda: _Connection(latency, accepted), HOST, port, backlog=1024
    )
    async with server:
        await stopped.wait()


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay of every answer (default: 0)"
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        action="append",
        default=[],
        help="a file holding a client token to answer (repeatable; default: answer anyone)",
    )
    arguments = parser.parse_args(argv)
    tokens = [read_token(path) for path in arguments.token_file]
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(arguments.port, arguments.latency_ms / 1000, tokens))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
