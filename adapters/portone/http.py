"""The HTTP connection to PortOne: one aiohttp session with a pool of kept-alive connections.

aiohttp, not httpx: on this project's benchmark one GET to PortOne cost httpx (its client, httpcore,
h11 and anyio) about 1.1 ms of CPU and aiohttp about 0.3 ms, a fifth of what a whole verification may
cost (docs/performance.md). What aiohttp raises is translated here into three outcomes the adapter
understands, so nothing of aiohttp leaks past this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL


class ConnectFailed(Exception):
    """No answer could have been produced: the connection failed or timed out before the request went out."""


class ExchangeFailed(Exception):
    """The connection broke during the exchange (dropped, reset, a truncated body)."""


class ReadTimedOut(Exception):
    """The request was sent and no complete answer arrived in time."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


class PortOneHttp:
    """Sends one request to PortOne and returns its status and body, whatever the status."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"PortOneHttp(base_url={self._base_url!r})"

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        base_url: str,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        max_connections: int = 100,
    ) -> AsyncIterator[PortOneHttp]:
        connector = aiohttp.TCPConnector(
            limit=max_connections,
            # Connections stay open between bursts: a new TLS handshake costs more than the request.
            keepalive_timeout=60,
        )
        timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": "idgate"},
            # PortOne sets no cookies that matter; a jar would only cost time and memory.
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
        )
        try:
            yield cls(session, base_url)
        finally:
            await session.close()

    async def send(
        self, method: str, path: str, *, headers: Mapping[str, str], body: bytes | None = None
    ) -> Answer:
        # `path` is built by the adapter from validated parts and quoted already: no second quoting.
        url = URL(self._base_url + path, encoded=True)
        try:
            async with self._session.request(method, url, headers=headers, data=body) as response:
                return Answer(response.status, await response.read())
        except aiohttp.ConnectionTimeoutError as exc:
            raise ConnectFailed("connect timeout") from exc
        except TimeoutError as exc:
            raise ReadTimedOut("read timeout") from exc
        except aiohttp.ClientConnectorError as exc:
            raise ConnectFailed(type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            raise ExchangeFailed(type(exc).__name__) from exc
