"""What a hostile or broken client can do to a running idgate, and what it cannot: fill the database
through prepare, or hold connections open with a body that never finishes."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.conftest import Sandbox, SettingsFactory, running_api


async def test_prepare_is_limited_per_client_address_across_workers(
    sandbox: Sandbox, settings_for: SettingsFactory
) -> None:
    # A day's window: the test cannot straddle two (short of midnight UTC).
    limited = settings_for(sandbox, http={"prepare_rate_limit": 5, "prepare_rate_window_seconds": 86400})
    async with running_api(limited) as one, running_api(limited) as two:  # two workers, one database
        answers = [await (one, two)[n % 2].post("/certifications/prepare", json={}) for n in range(7)]
        assert [a.status_code for a in answers] == [201] * 5 + [429] * 2
        refused = answers[5]
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 86400
        # Behind a trusted proxy (127.0.0.1 by default), X-Forwarded-For names the client.
        elsewhere = await one.post(
            "/certifications/prepare", json={}, headers={"X-Forwarded-For": "203.0.113.5"}
        )
        assert elsewhere.status_code == 201


async def test_the_limit_can_be_turned_off(sandbox: Sandbox, settings_for: SettingsFactory) -> None:
    async with running_api(settings_for(sandbox, http={"prepare_rate_limit": 0})) as api:
        answers = await asyncio.gather(*(api.post("/certifications/prepare", json={}) for _ in range(80)))
    assert {a.status_code for a in answers} == {201}


@pytest.mark.parametrize("path", ["/certifications/prepare", "/certifications"])
async def test_a_body_that_trickles_in_is_cut_off_with_408(
    sandbox: Sandbox, settings_for: SettingsFactory, path: str
) -> None:
    settings = settings_for(sandbox, http={"body_timeout_seconds": 1.0, "prepare_rate_limit": 0})
    async with running_api(settings) as api:
        host, port = api.base_url.host, api.base_url.port
        assert port is not None
        reader, writer = await asyncio.open_connection(host, port)
        started = time.monotonic()
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n{".encode()
        )
        await writer.drain()

        async def trickle() -> None:  # a byte every 0.3 s: never idle long enough for a keep-alive timeout
            for _ in range(60):
                await asyncio.sleep(0.3)
                writer.write(b" ")
                await writer.drain()

        sending = asyncio.create_task(trickle())
        try:
            answer = await asyncio.wait_for(reader.read(4096), 10)
            closed = await asyncio.wait_for(reader.read(), 10)  # then the server hangs up
        finally:
            sending.cancel()
            writer.close()
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"request_timeout" in answer
    assert closed == b""
    assert 0.9 < elapsed < 5, elapsed
    async with running_api(settings) as api:  # and the server serves the next client as before
        assert (await api.post("/certifications/prepare", json={})).status_code == 201
