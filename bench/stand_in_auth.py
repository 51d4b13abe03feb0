"""A stand-in for auth-service: ``POST /auth/validate`` says yes after a fixed latency.

Run it as ``python -m bench.stand_in_auth --port P --latency-ms 10``.

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
import json
import signal
from typing import cast

import uvloop
from tests.support.processes import HOST

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


def _response(status: bytes, payload: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(payload)).encode()
        + b"\r\n\r\n"
        + payload
    )


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


class _Connection(asyncio.Protocol):
    """One client connection: parses requests and answers each after the latency."""

    def __init__(self, latency: float) -> None:
        self._latency = latency
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
                length = _content_length(bytes(self._buffer[:end]))
            except ValueError:
                self._close()
                return
            start = end + len(_HEADERS_END)
            if len(self._buffer) < start + length:
                return
            body = bytes(self._buffer[start : start + length])
            del self._buffer[: start + length]
            response = answer(body)
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


async def serve(port: int, latency: float) -> None:
    """Answer on ``port`` until SIGTERM or SIGINT.

    Args:
        port: The port to listen on, on the loopback interface.
        latency: Seconds to wait before each answer.
    """
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stopped.set)
    server = await loop.create_server(lambda: _Connection(latency), HOST, port, backlog=1024)
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
    arguments = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(arguments.port, arguments.latency_ms / 1000))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
