"""Edge cases of the PortOne V1 adapter, against an aiohttp server on loopback that answers as told.

The real client, the real socket: a dropped connection or a slow answer is what the adapter sees in
production, not a simulated exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from idgate.adapters.portone import PortOneHttp, PortOneV1Credentials, PortOneV1Provider, RetryPolicy
from idgate.domain import (
    Carrier,
    CertificationNotFound,
    Gender,
    InvalidCertificationId,
    ProviderTimeout,
    ProviderUnavailable,
)
from idgate.domain.age import SEOUL

SECRET = "s3cr3t-imp-secret"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
Handler = Callable[[web.Request], web.StreamResponse | Awaitable[web.StreamResponse]]


def token_response(now: int = 1_700_000_000, lifetime: int = 1800, token: str = TOKEN) -> web.Response:
    body = {"access_token": token, "now": now, "expired_at": now + lifetime}
    return web.json_response({"code": 0, "message": None, "response": body})


def cert_response(**fields: Any) -> web.Response:
    record = {
        "imp_uid": "imp_123",
        "pg_provider": "danal",
        "name": "홍길동",
        "gender": "male",
        "birthday": "1990-01-01",
        "foreigner": False,
        "certified": True,
        "certified_at": 1_700_000_000,
        "merchant_uid": "m1",
        **fields,
    }
    record = {k: v for k, v in record.items() if v is not ...}
    return web.json_response({"code": 0, "message": None, "response": record})


def status(code: int, body: Any = None) -> web.Response:
    return web.Response(status=code) if body is None else web.json_response(body, status=code)


class Upstream:
    """Answers getToken, then hands certification requests to `handler`; counts both."""

    def __init__(self, handler: Handler, token: Callable[[], web.Response] = token_response) -> None:
        self.handler, self.token = handler, token
        self.token_calls = 0
        self.get_calls: list[web.Request] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/users/getToken":
            self.token_calls += 1
            return self.token()
        self.get_calls.append(request)
        answer = self.handler(request)
        return await answer if isinstance(answer, Awaitable) else answer


@contextlib.asynccontextmanager
async def provider(upstream: Upstream, attempts: int = 3) -> AsyncIterator[PortOneV1Provider]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    async with (
        TestServer(app, host="127.0.0.1") as server,
        PortOneHttp.open(str(server.make_url("")), read_timeout=0.5) as http,
    ):
        yield PortOneV1Provider(http, PortOneV1Credentials("key", SECRET), retry=RetryPolicy(attempts, 0.0))


async def fetch(upstream: Upstream, imp_uid: str = "imp_123") -> Any:
    async with provider(upstream) as p:
        return await p.fetch_certification(imp_uid)


async def test_maps_a_full_record_to_the_domain() -> None:
    upstream = Upstream(
        lambda r: cert_response(
            phone="010-1234-5678",
            carrier="LGT_MVNO",
            unique_key="CI==",
            unique_in_site="DI==",
            foreigner_v2=True,
            gender="female",
        )
    )
    c = await fetch(upstream)
    assert (c.name, c.gender, c.birth_date, c.phone) == (
        "홍길동",
        Gender.FEMALE,
        date(1990, 1, 1),
        "01012345678",
    )
    assert c.carrier is Carrier.LGU_MVNO
    assert c.carrier.is_mvno
    assert (c.ci, c.di, c.is_foreigner, c.certified) == ("CI==", "DI==", True, True)
    assert c.certified_at == datetime.fromtimestamp(1_700_000_000, UTC)
    assert upstream.get_calls[0].headers["authorization"] == f"Bearer {TOKEN}"


async def test_absent_phone_carrier_ci_and_di_are_normal() -> None:
    c = await fetch(Upstream(lambda r: cert_response()))
    assert (c.phone, c.carrier, c.ci, c.di) == (None, None, None, None)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"foreigner": False, "foreigner_v2": None}, None),  # Danal without the foreigner-flag contract
        ({"foreigner": False, "foreigner_v2": False}, False),
        ({"foreigner": True}, True),  # no foreigner_v2 at all: trust foreigner
    ],
)
async def test_foreigner_flag(fields: dict[str, Any], expected: bool | None) -> None:
    c = await fetch(Upstream(lambda r: cert_response(**fields)))
    assert c.is_foreigner is expected


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31)))
async def test_legacy_birth_is_kst_midnight(birth: date) -> None:
    seconds = int(datetime(birth.year, birth.month, birth.day, tzinfo=SEOUL).timestamp())
    upstream = Upstream(lambda r: cert_response(birthday=..., birth=seconds))
    c = await fetch(upstream)
    assert c.birth_date == birth


async def test_birthday_wins_over_legacy_birth() -> None:
    upstream = Upstream(lambda r: cert_response(birthday="1990-01-01", birth=0))
    assert (await fetch(upstream)).birth_date == date(1990, 1, 1)


async def test_not_found_is_a_domain_error() -> None:
    body = {"code": -1, "message": "인증결과가 존재하지 않습니다.", "response": None}
    with pytest.raises(CertificationNotFound):
        await fetch(Upstream(lambda r: status(404, body)))


async def test_code_other_than_zero_on_200_is_an_error() -> None:
    body = {"code": 1, "message": "something", "response": None}
    with pytest.raises(ProviderUnavailable, match="code 1"):
        await fetch(Upstream(lambda r: status(200, body)))


@pytest.mark.parametrize(
    "body",
    [
        b"<html>502</html>",
        b"",
        b'{"code":0,"response":{"imp_uid":',
        b"[]",
        b'{"code":0,"response":{"imp_uid":"imp_123","certified":"yes"}}',
        b'{"code":0,"response":{"imp_uid":"imp_123","certified":true}}',
    ],
)
async def test_malformed_bodies_are_clear_provider_errors(body: bytes) -> None:
    upstream = Upstream(lambda r: web.Response(body=body))
    with pytest.raises(ProviderUnavailable, match=r"malformed|invalid fields"):
        await fetch(upstream)


async def test_an_answer_for_another_imp_uid_is_rejected() -> None:
    with pytest.raises(ProviderUnavailable, match="different"):
        await fetch(Upstream(lambda r: cert_response(imp_uid="imp_999")))


async def test_401_refreshes_the_token_once_and_retries_once() -> None:
    tokens = iter(["a" * 40, "b" * 40])
    upstream = Upstream(
        lambda r: cert_response() if r.headers["authorization"] == "Bearer " + "b" * 40 else status(401),
        token=lambda: token_response(token=next(tokens)),
    )
    c = await fetch(upstream)
    assert c.imp_uid == "imp_123"
    assert (upstream.token_calls, len(upstream.get_calls)) == (2, 2)


async def test_a_second_401_is_not_retried_forever() -> None:
    upstream = Upstream(lambda r: status(401))
    with pytest.raises(ProviderUnavailable, match="401"):
        await fetch(upstream)
    assert (upstream.token_calls, len(upstream.get_calls)) == (2, 2)


async def test_wrong_credentials_say_where_to_set_them() -> None:
    upstream = Upstream(lambda r: cert_response(), token=lambda: status(401, {"code": -1}))
    with pytest.raises(ProviderUnavailable, match="IDGATE_PORTONE_IMP_KEY") as caught:
        await fetch(upstream)
    assert SECRET not in str(caught.value)


async def test_5xx_is_retried_then_succeeds() -> None:
    answers = iter([status(503), status(502), cert_response()])
    upstream = Upstream(lambda r: next(answers))
    assert (await fetch(upstream)).imp_uid == "imp_123"
    assert len(upstream.get_calls) == 3


async def test_retries_are_bounded() -> None:
    upstream = Upstream(lambda r: status(503))
    with pytest.raises(ProviderUnavailable, match="after 3 attempts"):
        await fetch(upstream)
    assert len(upstream.get_calls) == 3


async def test_dropped_connections_are_retried() -> None:
    drops = iter([True, True])

    def flaky(request: web.Request) -> web.Response:
        if next(drops, False):
            assert request.transport is not None
            request.transport.abort()  # the connection is gone before any answer
        return cert_response()

    upstream = Upstream(flaky)
    assert (await fetch(upstream)).imp_uid == "imp_123"
    assert len(upstream.get_calls) == 3


async def test_a_refused_connection_is_retried_then_reported() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once the socket closes
    async with PortOneHttp.open(f"http://127.0.0.1:{port}") as http:
        p = PortOneV1Provider(http, PortOneV1Credentials("key", SECRET), retry=RetryPolicy(2, 0.0))
        with pytest.raises(ProviderUnavailable, match="after 2 attempts"):
            await p.fetch_certification("imp_123")


async def test_a_read_timeout_is_a_timeout_error_and_not_retried() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)  # longer than the provider's 0.5 s read timeout
        return cert_response()

    upstream = Upstream(slow)
    with pytest.raises(ProviderTimeout):
        await fetch(upstream)
    assert len(upstream.get_calls) == 1


async def test_a_token_with_little_life_left_is_reused_until_halfway_not_refetched_every_call() -> None:
    # The server says 59 s remain (its clock, whatever ours says): under the 60 s margin, yet
    # asking again on every call would hammer getToken until it expires.
    upstream = Upstream(lambda r: cert_response(), token=lambda: token_response(lifetime=59))
    async with provider(upstream) as p:
        for _ in range(5):
            await p.fetch_certification("imp_123")
    assert upstream.token_calls == 1
    spent = Upstream(lambda r: cert_response(), token=lambda: token_response(lifetime=0))
    async with provider(spent) as q:
        await q.fetch_certification("imp_123")
        await q.fetch_certification("imp_123")
    assert spent.token_calls == 2  # a token with no life left is refreshed on the next call
    fresh = Upstream(lambda r: cert_response())
    async with provider(fresh) as q:
        for _ in range(5):
            await q.fetch_certification("imp_123")
    assert fresh.token_calls == 1


@pytest.mark.parametrize("bad", ["../users/getToken", "imp_1/../../users", "imp_1?x=1", "imp_1%2f", "imp_1#"])
async def test_path_injection_is_refused_before_any_request(bad: str) -> None:
    upstream = Upstream(lambda r: cert_response())
    with pytest.raises(InvalidCertificationId):
        await fetch(upstream, bad)
    assert upstream.token_calls == 0
    assert upstream.get_calls == []


async def test_secrets_never_show_in_reprs_errors_or_logs() -> None:
    credentials = PortOneV1Credentials("key", SECRET)
    assert SECRET not in repr(credentials)
    upstream = Upstream(lambda r: status(503))
    async with provider(upstream) as p:
        with structlog.testing.capture_logs() as logs, pytest.raises(ProviderUnavailable) as caught:
            await p.fetch_certification("imp_123")
    seen = json.dumps(logs, default=str) + str(caught.value) + repr(p)
    assert logs, "retries are logged"
    assert SECRET not in seen
    assert TOKEN not in seen
