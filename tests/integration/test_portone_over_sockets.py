"""The real PortOne V1 adapter against the sandbox over real sockets, with injected faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from idgate.adapters.portone import PortOneHttp, PortOneV1Credentials, PortOneV1Provider, RetryPolicy
from idgate.domain import CertificationNotFound, ProviderTimeout, ProviderUnavailable
from idgate.sandbox import TokenRules
from tests.conftest import Sandbox

GET_TOKEN, GET_CERT = "POST /users/getToken", "GET /certifications/{imp_uid}"


@pytest.fixture
async def portone(sandbox: Sandbox) -> AsyncIterator[PortOneV1Provider]:
    async with PortOneHttp.open(sandbox.url, connect_timeout=1.0, read_timeout=1.0) as http:
        yield PortOneV1Provider(
            http, PortOneV1Credentials("sandbox_imp_key", "sandbox_imp_secret"), retry=RetryPolicy(3, 0.01)
        )


async def test_fifty_concurrent_lookups_cause_exactly_one_get_token(
    sandbox: Sandbox, portone: PortOneV1Provider
) -> None:
    imp_uids = [await sandbox.certify("adult") for _ in range(50)]
    found = await asyncio.gather(*(portone.fetch_certification(i) for i in imp_uids))
    assert [c.imp_uid for c in found] == imp_uids
    assert sandbox.requests(GET_TOKEN) == 1
    assert sandbox.requests(GET_CERT) == 50


async def test_token_expiry_mid_run_is_invisible_to_callers(sandbox: Sandbox) -> None:
    # A 3-second token life and a 1-second refresh margin make several expiries happen in one run.
    sandbox.state.token_rules = TokenRules(ttl=3, grace_window=0, grace_extension=0)
    async with PortOneHttp.open(sandbox.url) as http:
        portone = PortOneV1Provider(
            http, PortOneV1Credentials("sandbox_imp_key", "sandbox_imp_secret"), refresh_margin_seconds=1
        )
        imp_uid = await sandbox.certify("adult")
        deadline = time.monotonic() + 5
        lookups = 0
        while time.monotonic() < deadline:
            await asyncio.gather(*(portone.fetch_certification(imp_uid) for _ in range(5)))
            lookups += 5
            await asyncio.sleep(0.1)
    tokens = sandbox.requests(GET_TOKEN)
    assert tokens >= 2, "the run outlived the first token"
    assert lookups >= 100
    assert tokens <= 12, f"{tokens} token requests for {lookups} lookups: tokens must be cached"
    # Every lookup succeeded (gather would raise otherwise); a 401 at a token's last moment costs each
    # of the 5 in-flight calls one retry, never a failure.
    assert lookups <= sandbox.requests(GET_CERT) <= lookups + 5 * tokens


async def test_an_expired_token_gets_refreshed_and_the_call_retried(
    sandbox: Sandbox, portone: PortOneV1Provider
) -> None:
    imp_uid = await sandbox.certify("adult")
    await portone.fetch_certification(imp_uid)
    await sandbox.fault("expired_token", path="/certifications/")
    assert (await portone.fetch_certification(imp_uid)).imp_uid == imp_uid
    assert sandbox.requests(GET_TOKEN) == 2
    assert sandbox.requests(GET_CERT) == 3


async def test_503_is_retried_then_succeeds(sandbox: Sandbox, portone: PortOneV1Provider) -> None:
    imp_uid = await sandbox.certify("adult")
    await sandbox.fault("status", count=2, status=503, path="/certifications/")
    assert (await portone.fetch_certification(imp_uid)).imp_uid == imp_uid
    assert sandbox.requests(GET_CERT) == 3


async def test_a_dropped_connection_is_retried(sandbox: Sandbox, portone: PortOneV1Provider) -> None:
    imp_uid = await sandbox.certify("adult")
    await sandbox.fault("drop", count=1, path="/certifications/")
    assert (await portone.fetch_certification(imp_uid)).imp_uid == imp_uid
    assert sandbox.requests(GET_CERT) == 2


async def test_a_slow_portone_is_a_timeout(sandbox: Sandbox, portone: PortOneV1Provider) -> None:
    imp_uid = await sandbox.certify("adult")
    await sandbox.fault("latency", latency_ms=1500, path="/certifications/")
    with pytest.raises(ProviderTimeout):
        await portone.fetch_certification(imp_uid)


async def test_a_malformed_body_is_a_provider_error(sandbox: Sandbox, portone: PortOneV1Provider) -> None:
    imp_uid = await sandbox.certify("adult")
    await sandbox.fault("malformed", path="/certifications/")
    with pytest.raises(ProviderUnavailable, match="malformed"):
        await portone.fetch_certification(imp_uid)


async def test_unknown_and_deleted_certifications_are_not_found(
    sandbox: Sandbox, portone: PortOneV1Provider
) -> None:
    with pytest.raises(CertificationNotFound):
        await portone.fetch_certification("imp_000000000000")


async def test_every_test_person_maps_to_the_domain(sandbox: Sandbox, portone: PortOneV1Provider) -> None:
    seen = {}
    for person in sandbox.state.persons:
        seen[person] = await portone.fetch_certification(await sandbox.certify(person))
    assert seen["kakao-no-ci"].ci is None
    assert seen["kakao-no-ci"].di is None
    assert seen["inicis-no-di"].ci is not None
    assert seen["inicis-no-di"].di is None
    assert seen["foreigner"].is_foreigner is True
    assert seen["foreigner-unknown"].is_foreigner is None
    assert seen["adult"].is_foreigner is False
    assert seen["no-phone"].phone is None
    assert seen["no-phone"].carrier is None
    assert seen["mvno"].carrier is not None
    assert seen["mvno"].carrier.is_mvno
    assert seen["dual-phone-a"].ci == seen["dual-phone-b"].ci
    assert seen["dual-phone-a"].phone != seen["dual-phone-b"].phone
    assert str(seen["leap-day"].birth_date).endswith("-02-29")
