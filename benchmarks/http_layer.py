"""What the HTTP framework costs a verification: `POST /certifications` through idgate's Litestar app,
against `container.verify` called directly, both on the in-memory fakes (no PortOne, no database).

    .venv/bin/python -m benchmarks.http_layer --calls 5000

The app is driven through its ASGI interface in this process (no server, no socket), so the
difference is Litestar's own work: routing, dependency injection, decoding the body, encoding the
answer. CPU time per call (`time.process_time()`), printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import uvloop

from idgate.domain import Outcome
from idgate.entrypoints.http import create_app
from idgate.entrypoints.settings import load_settings, with_overrides
from tests.fakes import (
    FakeAccessTokens,
    FakeCertificationProvider,
    FixedClock,
    InMemoryVerificationStore,
    StaticPolicyEvaluator,
    a_certification,
    a_result,
)

Message = dict[str, Any]


async def forever() -> Message:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def post(app: Callable[..., Awaitable[None]], imp_uid: str) -> Awaitable[None]:
    body = json.dumps({"imp_uid": imp_uid}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/certifications",
        "raw_path": b"/certifications",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"idgate"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    chunks = iter([{"type": "http.request", "body": body, "more_body": False}])

    async def receive() -> Message:
        return next(chunks, None) or await forever()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise SystemExit(f"the app answered {message['status']}")

    return app(scope, receive, send)


async def main(calls: int) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    settings = with_overrides(
        load_settings(environ={}),
        verification={"require_prepare": False},
        portone={"imp_key": "unused", "imp_secret": "unused"},
    )
    clock, provider = FixedClock(), FakeCertificationProvider()
    for n in range(2 * calls + 100):
        provider.add(a_certification(imp_uid=f"imp_{n}", certified_at=clock.at))
    app = create_app(
        settings,
        provider=provider,
        store=InMemoryVerificationStore(),
        tokens=FakeAccessTokens(),
        policies=StaticPolicyEvaluator(results=[a_result(Outcome.ALLOW)]),
        clock=clock,
    )
    started = iter([{"type": "lifespan.startup"}])
    ready = asyncio.Event()

    async def lifespan_receive() -> Message:
        return next(started, None) or await forever()

    async def lifespan_send(message: Message) -> None:
        if message["type"] == "lifespan.startup.complete":
            ready.set()

    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan_receive, lifespan_send)
    )
    await ready.wait()
    for n in range(100):  # warm up
        await post(app, f"imp_{n}")
    start = time.process_time()
    for n in range(100, 100 + calls):
        await post(app, f"imp_{n}")
    through_app = (time.process_time() - start) / calls * 1e6
    container = app.state.container
    start = time.process_time()
    for n in range(100 + calls, 100 + 2 * calls):
        await container.verify(f"imp_{n}", None, None)
    direct = (time.process_time() - start) / calls * 1e6
    lifespan.cancel()
    print(f"CPU per verification on fakes ({calls:,} each):")
    print(f"  through the Litestar app   {through_app:6.0f} µs")
    print(f"  container.verify directly  {direct:6.0f} µs")
    print(f"  the framework's share      {through_app - direct:6.0f} µs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5000)
    uvloop.run(main(parser.parse_args().calls))
