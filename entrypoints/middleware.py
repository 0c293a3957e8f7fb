"""ASGI middleware of the HTTP API."""

from __future__ import annotations

import asyncio

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send


class BodyDeadline(ASGIMiddleware):
    """The whole body of a request must arrive within `seconds` of the request's start.

    uvicorn bounds idle connections but not a body that trickles in: a client that promises a body and
    sends a byte now and then would hold its connection (and whatever the handler holds) for as long
    as it likes. Past the deadline the request is answered 408 and the connection is closed. Once the
    body is complete, `receive` is passed through untouched (it then only waits for a disconnect).
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, *, seconds: float) -> None:
        self.seconds = seconds

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        deadline = asyncio.get_running_loop().time() + self.seconds
        body_done = False

        async def bounded() -> ReceiveMessage:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    status_code=408,
                    detail=f"the request body did not arrive within {self.seconds:g} s; send it at once.",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await next_app(scope, bounded, send)
