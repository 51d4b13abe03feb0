"""A TCP proxy on a free port that a test can cut, to make a real server unreachable."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

from tests.support.servers import HOST, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator


class TcpProxy:
    """Forwards connections from ``port`` to ``target_port`` until :meth:`cut`."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._forward, HOST, self.port)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(HOST, self._target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, target_writer}
        await asyncio.gather(self._pipe(reader, target_writer), self._pipe(target_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    def cut(self) -> None:
        """Close every connection and refuse new ones."""
        asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(5)

    @contextmanager
    def running(self) -> Iterator[TcpProxy]:
        """Run the proxy in a background thread."""
        thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        try:
            yield self
        finally:
            self.cut()
            self._loop.call_soon_threadsafe(self._loop.stop)
            thread.join(5)
            self._loop.close()
