"""A TCP proxy between idgate and its database, for taking the database away mid-test and giving it back.

Real sockets all the way: idgate's driver talks to the proxy as it would to PostgreSQL, and what a
fault does to it is what a dead network or a stopped server does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Literal

Mode = Literal["forward", "refuse", "blackhole"]


class TcpProxy:
    """`forward`: pass bytes both ways. `refuse`: cut every open connection and refuse new ones (a stopped
    server). `blackhole`: keep connections open but pass nothing (a dead network, a frozen server)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self.mode: Mode = "forward"
        self._flowing = asyncio.Event()  # set unless blackholed
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Future[tuple[None, None]]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, target_host: str, target_port: int) -> AsyncIterator[TcpProxy]:
        proxy = cls(target_host, target_port)
        proxy._server = await asyncio.start_server(proxy._accept, "127.0.0.1", 0)
        proxy.port = proxy._server.sockets[0].getsockname()[1]
        try:
            yield proxy
        finally:
            proxy._server.close()
            proxy._cut()
            for task in list(proxy._links):
                task.cancel()
            await asyncio.gather(*proxy._links, return_exceptions=True)

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode == "blackhole":
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode == "refuse":
            self._cut()

    def _cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()  # a reset, as from a server that went away
        self._writers.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, server_writer))
        link = asyncio.gather(
            self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer)
        )
        task = asyncio.ensure_future(link)
        self._links.add(task)
        try:
            await task
        except (asyncio.CancelledError, OSError):
            pass
        finally:
            self._links.discard(task)
            for writer in (client_writer, server_writer):
                self._writers.discard(writer)
                writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self._flowing.wait()  # blackholed: hold the bytes, nothing arrives on the other side
            if self.mode == "refuse":
                return
            writer.write(data)
            await writer.drain()
