"""The handler idgate replaces, written the way a Python team would write it from PortOne's example:
a new access token for every request, then the certification, then an age check. No database, no
replay protection, no policies: the floor idgate is compared against.

    .venv/bin/python -m benchmarks.naive_handler --port 8800 --portone http://127.0.0.1:8700
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import date
from typing import Any

import httpx
import uvicorn
from litestar import Litestar, post
from litestar.datastructures import State


@post("/certifications", status_code=200)
async def verify(data: dict[str, Any], state: State) -> dict[str, Any]:
    client: httpx.AsyncClient = state.client
    token = await client.post(
        "/users/getToken", json={"imp_key": state.imp_key, "imp_secret": state.imp_secret}
    )
    access_token = token.json()["response"]["access_token"]
    found = await client.get(f"/certifications/{data['imp_uid']}", headers={"Authorization": access_token})
    certification = found.json()["response"]
    birthday = date.fromisoformat(certification["birthday"])
    today = date.today()  # noqa: DTZ011 - as the example is usually written: the server's own zone
    age = today.year - birthday.year - ((today.month, today.day) < (birthday.month, birthday.day))
    allowed = certification["certified"] and age >= 19
    return {"imp_uid": data["imp_uid"], "verdict": "allow" if allowed else "deny"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--portone", required=True)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would cost CPU and noise
    client = httpx.AsyncClient(base_url=args.portone, timeout=10)
    state = State({"client": client, "imp_key": "sandbox_imp_key", "imp_secret": "sandbox_imp_secret"})
    app = Litestar([verify], state=state, openapi_config=None)
    asyncio.run(uvicorn.Server(uvicorn.Config(app, port=args.port, log_level="warning")).serve())


if __name__ == "__main__":
    main()
