"""PortOne slow or failing under load: every verification gets its 504 or 502 in bounded time, nothing is
consumed (the user retries and succeeds), and meanwhile idgate keeps serving: no database connection
is held across a PortOne call, so a small pool does not run dry."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from tests.conftest import Sandbox, SettingsFactory, prepared_certification, running_api
from tests.databases import TestDatabase

READ_TIMEOUT = 0.5


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"kind": "latency", "latency_ms": 3000}, 504, "provider_timeout"),
        ({"kind": "status", "status": 503}, 502, "provider_unavailable"),
    ],
    ids=["slow", "failing"],
)
async def test_portone_slow_or_failing_under_load(
    sandbox: Sandbox,
    settings_for: SettingsFactory,
    database: TestDatabase,
    *,
    fault: dict[str, Any],
    status: int,
    code: str,
) -> None:
    settings = settings_for(
        sandbox, portone={"read_timeout": READ_TIMEOUT, "attempts": 2}, database={"pool_size": 2}
    )
    async with running_api(settings) as api:
        bodies = [await prepared_certification(api, sandbox, "adult", f"acct-{n}") for n in range(24)]
        await sandbox.fault(count=1000, path="/certifications/", **fault)

        async def verify(body: dict[str, str]) -> tuple[httpx.Response, float]:
            started = time.monotonic()
            answer = await api.post("/certifications", json=body)
            return answer, time.monotonic() - started

        load = asyncio.gather(*(verify(body) for body in bodies))
        await asyncio.sleep(0.1)  # every verification is now waiting on PortOne
        started = time.monotonic()
        side = await api.post("/certifications/prepare", json={"subject": "meanwhile"})
        health = await api.get("/healthz")
        beside = time.monotonic() - started
        during = await load
        consumed = database.scalar("select count(*) from consumed_certifications")
        sandbox.state.faults.clear()
        retried = [await api.post("/certifications", json=body) for body in bodies]
    assert (side.status_code, health.status_code) == (201, 200)
    assert beside < 1.0, f"prepare and /healthz waited {beside:.2f} s behind the stuck verifications"
    assert {(a.status_code, a.json()["code"]) for a, _ in during} == {(status, code)}
    assert max(seconds for _, seconds in during) < 2 * READ_TIMEOUT + 2.0
    assert consumed == 0  # nothing was used up
    assert [a.status_code for a in retried] == [200] * len(bodies)
