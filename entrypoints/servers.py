"""Running ASGI apps with uvicorn on sockets we bind ourselves, so a busy port is a clear error."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from idgate.domain import ConfigurationError


@dataclass(frozen=True, slots=True)
class Listener:
    app: Any
    host: str
    port: int
    name: str


def bind(host: str, port: int, name: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on accepted sockets whose protocol
    # says TCP. Without it, uvicorn's separate header and body writes wait out the client's delayed
    # ACK, about 40 ms on every request of a kept-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port} for the {name} ({exc.strerror}); "
            "stop whatever uses it or pick another port with --port."
        ) from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _config(app: Any, log_level: str, forwarded_allow_ips: Sequence[str], **more: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="on",
        access_log=log_level == "info",
        # X-Forwarded-For names the client only when a trusted proxy sent it (docs/operations.md).
        proxy_headers=True,
        forwarded_allow_ips=list(forwarded_allow_ips),
        **more,
    )


@contextlib.asynccontextmanager
async def serving(
    listeners: Sequence[Listener],
    *,
    log_level: str = "warning",
    forwarded_allow_ips: Sequence[str] = ("127.0.0.1",),
) -> AsyncIterator[list[str]]:
    """Start every listener, yield their base URLs once all accept requests, stop them on exit."""
    sockets = [bind(item.host, item.port, item.name) for item in listeners]
    servers = [uvicorn.Server(_config(item.app, log_level, forwarded_allow_ips)) for item in listeners]
    tasks = [
        asyncio.create_task(server.serve(sockets=[sock]))
        for server, sock in zip(servers, sockets, strict=True)
    ]
    try:
        while not all(server.started for server in servers):
            failed = [task for task in tasks if task.done()]
            if failed:
                raise ConfigurationError("a server failed to start; see the messages above.")
            await asyncio.sleep(0.02)
        urls = []
        for sock in sockets:
            host, port = sock.getsockname()[:2]
            urls.append(f"http://{'[' + host + ']' if ':' in host else host}:{port}")
        yield urls
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        for sock in sockets:
            sock.close()


async def serve_forever(
    listeners: Sequence[Listener],
    *,
    log_level: str = "info",
    forwarded_allow_ips: Sequence[str] = ("127.0.0.1",),
) -> None:
    async with serving(listeners, log_level=log_level, forwarded_allow_ips=forwarded_allow_ips):
        await asyncio.Event().wait()


def serve_workers(
    app: str,
    *,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    forwarded_allow_ips: Sequence[str],
) -> None:
    """`workers` processes on one socket bound here, each calling the app factory `app`
    ("module:function"); uvicorn's supervisor replaces a worker that dies. Returns on SIGINT/SIGTERM."""
    sock = bind(host, port, "API")
    config = _config(
        app, log_level, forwarded_allow_ips, factory=True, workers=workers, loop="uvloop", http="httptools"
    )
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
