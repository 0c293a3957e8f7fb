"""The sockets idgate and the sandbox listen on: every accepted connection must send without delay."""

from __future__ import annotations

import asyncio
import socket

import httpx
import uvicorn

from idgate.entrypoints.servers import bind
from idgate.sandbox import create_sandbox_app


async def test_accepted_connections_have_tcp_nodelay() -> None:
    # As `serving()` does: uvicorn on a socket from bind(); then look at the server's end of a
    # kept-alive connection. Without TCP_NODELAY every request on it waits ~40 ms for a delayed ACK.
    listening = bind("127.0.0.1", 0, "test")
    server = uvicorn.Server(uvicorn.Config(create_sandbox_app(), log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.01)
        port = listening.getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(3):  # the same kept-alive connection each time
                assert (await client.get("/sandbox/persons")).status_code == 200
            accepted = [c.transport.get_extra_info("socket") for c in server.server_state.connections]
            assert len(accepted) == 1
            assert accepted[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.should_exit = True
        await task
        listening.close()
