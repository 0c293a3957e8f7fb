"""PostgreSQL going away under load, through a proxy on a real socket: verifications fail fast with 503
`store_unavailable`, consume nothing, /readyz says why, and idgate recovers by itself when the
database is back (no restart)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa

from idgate.entrypoints.settings import Settings
from tests.conftest import Sandbox, SettingsFactory, only_postgresql, prepared_certification, running_api
from tests.databases import TestDatabase
from tests.tcp_proxy import Mode, TcpProxy

pytestmark = only_postgresql
CONNECT_TIMEOUT, STATEMENT_TIMEOUT = 1.0, 2.0
BOUND = CONNECT_TIMEOUT + STATEMENT_TIMEOUT + 1.5  # the longest a request may take while the database is gone
# make test runs three test processes on two cores: a loaded event loop answers a second or two late,
# which says nothing about the timeouts (without them a blackholed request hangs for minutes).
LOADED_MACHINE = 2.0


@pytest.fixture
async def proxy(database: TestDatabase) -> AsyncIterator[TcpProxy]:
    url = sa.make_url(database.url)
    async with TcpProxy.running(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running


@pytest.fixture
def proxied(
    sandbox: Sandbox, settings_for: SettingsFactory, database: TestDatabase, proxy: TcpProxy
) -> Settings:
    url = sa.make_url(database.url).set(host="127.0.0.1", port=proxy.port)
    return settings_for(
        sandbox,
        database={
            "url": url.render_as_string(hide_password=False),
            "connect_timeout": CONNECT_TIMEOUT,
            "statement_timeout": STATEMENT_TIMEOUT,
            "pool_size": 4,
        },
    )


async def timed_post(api: httpx.AsyncClient, body: dict[str, str]) -> tuple[int, str, float]:
    started = time.monotonic()
    answer = await api.post("/certifications", json=body)
    code = answer.json().get("code", "") if answer.status_code != 200 else ""
    return answer.status_code, code, time.monotonic() - started


async def ready_again(api: httpx.AsyncClient, within: float = 15) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if (await api.get("/readyz")).json()["checks"]["store"] == "ok":
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError("idgate did not recover after the database came back")


@pytest.mark.parametrize("fault", ["refuse", "blackhole"])
async def test_a_database_gone_mid_load_fails_fast_and_idgate_recovers_by_itself(
    sandbox: Sandbox, proxied: Settings, proxy: TcpProxy, database: TestDatabase, fault: Mode
) -> None:
    async with running_api(proxied) as api:
        # One person for many accounts: one binds, the others are denied; every one is a decision.
        bodies = [await prepared_certification(api, sandbox, "adult", f"acct-{n}") for n in range(80)]
        gate = asyncio.Semaphore(8)
        answered = 0
        some_answered = asyncio.Event()

        async def verify(body: dict[str, str]) -> tuple[int, str, float]:
            nonlocal answered
            async with gate:
                result = await timed_post(api, body)
            answered += 1
            if answered == 20:
                some_answered.set()
            return result

        load = [asyncio.create_task(verify(body)) for body in bodies]
        await some_answered.wait()  # some answered, some in flight, most not started
        proxy.set_mode(fault)
        during = await asyncio.gather(*load)
        ready = await api.get("/readyz")
        assert (ready.status_code, ready.json()["checks"]["store"]) == (503, "store_unavailable")

        failed = [body for body, (status, _, _) in zip(bodies, during, strict=True) if status != 200]
        assert failed, "the fault came too late to matter"
        assert {(status, code) for status, code, _ in during if status != 200} == {(503, "store_unavailable")}
        slowest = max(seconds for _, _, seconds in during)
        assert slowest < BOUND + 8 * 0.1 + LOADED_MACHINE, (
            f"a request took {slowest:.1f} s with the database gone"
        )

        proxy.set_mode("forward")
        await ready_again(api)
        retried = [await timed_post(api, body) for body in failed]
    # Nothing a failed attempt did was kept: each retry decides. A request cut off inside COMMIT may
    # have committed after all; its retry is then a replay (409), and its decision is on record.
    decided = dict(database.rows("select imp_uid, decision_id from decisions"))
    consumed = dict(database.rows("select imp_uid, decision_id from consumed_certifications"))
    assert decided == consumed
    for body, (status, code, _) in zip(failed, retried, strict=True):
        assert status == 200 or (status, code) == (409, "certification_already_used"), (status, code)
        assert body["imp_uid"] in decided
    assert len(decided) == len(bodies)
    assert database.scalar("select count(*) from identities") == 1
