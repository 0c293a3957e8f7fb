"""The least any Python idgate on this stack can cost: idgate's own server and client stack (uvicorn
with uvloop and httptools, Litestar, aiohttp with kept-alive connections), one cached token, one GET of
the certification, and an answer. No checks, no database, no policies, no encryption.

It is not a handler anyone should deploy; it is the ceiling for idgate's throughput in one process,
measured beside the naive handlers so that the gap between idgate and the ceiling shows what idgate's
own work costs, and the gap between the ceiling and PortOne's Node example what the stack costs.

    .venv/bin/python -m benchmarks.floor_handler --port 8801 --portone http://127.0.0.1:8700
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn
from litestar import Litestar, post
from litestar.datastructures import State


@post("/certifications", status_code=200)
async def verify(data: dict[str, Any], state: State) -> dict[str, Any]:
    session: aiohttp.ClientSession = state.session
    if state.token is None:  # fetched once: PortOne's tokens live 30 minutes, longer than a benchmark
        async with session.post(
            "/users/getToken", json={"imp_key": "sandbox_imp_key", "imp_secret": "sandbox_imp_secret"}
        ) as answer:
            state.token = (await answer.json())["response"]["access_token"]
    async with session.get(
        f"/certifications/{data['imp_uid']}", headers={"Authorization": state.token}
    ) as answer:
        certification = (await answer.json())["response"]
    return {"imp_uid": data["imp_uid"], "verdict": "allow" if certification["certified"] else "deny"}


async def serve(port: int, portone: str) -> None:
    session = aiohttp.ClientSession(
        base_url=portone, connector=aiohttp.TCPConnector(limit=100), cookie_jar=aiohttp.DummyCookieJar()
    )
    app = Litestar([verify], state=State({"session": session, "token": None}), openapi_config=None)
    config = uvicorn.Config(app, port=port, log_level="warning", loop="uvloop", http="httptools")
    try:
        await uvicorn.Server(config).serve()
    finally:
        await session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--portone", required=True)
    args = parser.parse_args()
    import uvloop  # noqa: PLC0415 - the same loop idgate serve runs on

    uvloop.run(serve(args.port, args.portone))


if __name__ == "__main__":
    main()
