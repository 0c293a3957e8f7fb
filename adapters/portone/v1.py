"""PortOne V1 (`api.iamport.kr`) implementation of the CertificationProvider port.

Foreign things (PortOne's JSON shapes and spellings, and the HTTP failures that http.py reports) stop
here: the domain receives a `Certification` or a domain error.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import msgspec
import structlog

from idgate.adapters.telemetry import PORTONE_SECONDS, PORTONE_TOKENS
from idgate.domain import (
    Carrier,
    Certification,
    CertificationNotFound,
    Gender,
    ProviderTimeout,
    ProviderUnavailable,
)
from idgate.domain.age import SEOUL
from idgate.domain.services import validate_imp_uid

from .http import Answer, ConnectFailed, ExchangeFailed, PortOneHttp, ReadTimedOut

log = structlog.get_logger("idgate.portone")

T = TypeVar("T")

_CARRIERS = {
    "SKT": Carrier.SKT,
    "KT": Carrier.KT,
    "LGT": Carrier.LGU,
    "SKT_MVNO": Carrier.SKT_MVNO,
    "KT_MVNO": Carrier.KT_MVNO,
    "LGT_MVNO": Carrier.LGU_MVNO,
}
_GENDERS = {"male": Gender.MALE, "female": Gender.FEMALE}


class _Envelope(msgspec.Struct, Generic[T]):
    code: int
    message: str | None = None
    response: T | None = None


class _TokenPayload(msgspec.Struct):
    access_token: str
    now: int
    expired_at: int


class _CertificationPayload(msgspec.Struct):
    imp_uid: str
    merchant_uid: str | None = None
    pg_provider: str | None = None
    name: str | None = None
    gender: str | None = None
    birthday: str | None = None
    birth: int | None = None
    foreigner: bool | None = None
    foreigner_v2: bool | msgspec.UnsetType | None = msgspec.UNSET
    phone: str | None = None
    carrier: str | None = None
    certified: bool = False
    certified_at: int | None = None
    unique_key: str | None = None
    unique_in_site: str | None = None
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class PortOneV1Credentials:
    imp_key: str
    imp_secret: str = field(repr=False)

    def __repr__(self) -> str:
        return "PortOneV1Credentials(imp_key=<set>, imp_secret=<hidden>)"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3
    backoff_seconds: float = 0.2

    def delay(self, attempt: int) -> float:
        # Full jitter keeps many workers from retrying in lockstep; not a security use of random.
        return self.backoff_seconds * (1 << attempt) * random.uniform(0.5, 1.5)  # noqa: S311


@dataclass(slots=True)
class _Token:
    value: str = field(repr=False)
    refresh_at: float  # time.monotonic() after which a new token is asked for

    def stale(self) -> bool:
        return time.monotonic() >= self.refresh_at

    @classmethod
    def from_lifetime(cls, value: str, lifetime: float, margin: float) -> _Token:
        # Normally refresh `margin` seconds before expiry. PortOne may hand back its current token with
        # less than that left; then refresh halfway through what is left rather than on every call.
        lead = lifetime - margin if lifetime > 2 * margin else lifetime / 2
        return cls(value, time.monotonic() + lead)


class PortOneV1Provider:
    """Fetches certifications with a cached access token (one getToken per token lifetime)."""

    def __init__(
        self,
        http: PortOneHttp,
        credentials: PortOneV1Credentials,
        *,
        retry: RetryPolicy | None = None,
        refresh_margin_seconds: float = 60.0,
    ) -> None:
        self._http = http
        self._credentials = credentials
        self._retry = retry or RetryPolicy()
        self._refresh_margin = refresh_margin_seconds
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PortOneV1Provider({self._http!r})"

    async def fetch_certification(self, imp_uid: str) -> Certification:
        validate_imp_uid(imp_uid)  # never let a crafted id shape the upstream URL
        path = f"/certifications/{quote(imp_uid, safe='')}"
        token = await self._access_token()
        response = await self._send("GET", path, token=token)
        if response.status == 401:
            # The token may have expired between our check and PortOne's; refresh once, retry once.
            token = await self._access_token(rejected=token)
            response = await self._send("GET", path, token=token)
        if response.status == 404:
            raise CertificationNotFound(
                "PortOne has no certification with this imp_uid; check that the frontend sends the imp_uid "
                "from the verification callback of this merchant account."
            )
        envelope = self._decode(response, _CertificationPayload)
        payload = envelope.response
        if payload is None or payload.imp_uid != imp_uid:
            raise ProviderUnavailable("PortOne answered for a different or missing imp_uid.")
        return _to_certification(payload)

    async def check_credentials(self) -> None:
        """Fetch (or reuse) a token: proves the URL and credentials work. Used by readiness checks."""
        await self._access_token()

    async def _access_token(self, *, rejected: str | None = None) -> str:
        token = self._token
        if token is not None and token.value != rejected and not token.stale():
            return token.value
        async with self._token_lock:
            token = self._token  # another task may have refreshed it while we waited
            if token is None or token.value == rejected or token.stale():
                token = self._token = await self._fetch_token()
            return token.value

    async def _fetch_token(self) -> _Token:
        PORTONE_TOKENS.inc()
        response = await self._send(
            "POST",
            "/users/getToken",
            body=msgspec.json.encode(
                {"imp_key": self._credentials.imp_key, "imp_secret": self._credentials.imp_secret}
            ),
        )
        if response.status == 401:
            raise ProviderUnavailable(
                "PortOne rejected the imp_key/imp_secret; set IDGATE_PORTONE_IMP_KEY and "
                "IDGATE_PORTONE_IMP_SECRET (or [portone] in idgate.toml) to the V1 API keys from the console."
            )
        payload = self._decode(response, _TokenPayload).response
        if payload is None:
            raise ProviderUnavailable("PortOne's token response carried no token.")
        # Trust the server's own clock for the lifetime: ours may be skewed.
        lifetime = payload.expired_at - payload.now
        log.info("portone_token_issued", lifetime_seconds=lifetime)
        return _Token.from_lifetime(payload.access_token, lifetime, self._refresh_margin)

    async def _send(
        self, method: str, path: str, *, token: str | None = None, body: bytes | None = None
    ) -> Answer:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        last_problem = ""
        route = _route(path)
        for attempt in range(self._retry.attempts):
            if attempt:
                await asyncio.sleep(self._retry.delay(attempt - 1))
            started = time.perf_counter()
            try:
                response = await self._http.send(method, path, headers=headers, body=body)
            except ReadTimedOut as exc:
                PORTONE_SECONDS.labels(route, "timeout").observe(time.perf_counter() - started)
                # Not retried: PortOne may still be working on it, and the caller's own deadline runs.
                raise ProviderTimeout(
                    "PortOne did not answer in time; try again shortly (the timeout is [portone] read_timeout)."
                ) from exc
            except (ConnectFailed, ExchangeFailed) as exc:
                PORTONE_SECONDS.labels(route, "failed").observe(time.perf_counter() - started)
                last_problem = str(exc)
                log.warning("portone_retry", path=route, attempt=attempt + 1, problem=last_problem)
                continue
            outcome = "server_error" if response.status >= 500 else "ok"
            PORTONE_SECONDS.labels(route, outcome).observe(time.perf_counter() - started)
            if response.status >= 500:
                last_problem = f"HTTP {response.status}"
                log.warning("portone_retry", path=route, attempt=attempt + 1, problem=last_problem)
                continue
            return response
        raise ProviderUnavailable(
            f"PortOne is unavailable ({last_problem} after {self._retry.attempts} attempts); try again later."
        )

    @staticmethod
    def _decode(response: Answer, payload_type: type[T]) -> _Envelope[T]:
        if response.status != 200:
            raise ProviderUnavailable(f"PortOne answered HTTP {response.status} unexpectedly.")
        try:
            envelope = msgspec.json.decode(response.body, type=_Envelope[payload_type])  # type: ignore[valid-type]
        except msgspec.DecodeError as exc:
            raise ProviderUnavailable("PortOne sent a malformed response (not the expected JSON).") from exc
        if envelope.code != 0:
            raise ProviderUnavailable(f"PortOne reported an error (code {envelope.code}).")
        return envelope


def _route(path: str) -> str:
    """The path with ids removed, so log lines group by endpoint and carry no identifiers."""
    return re.sub(r"/imp_[^/]*", "/{imp_uid}", path)


def certification_from_record(record: Mapping[str, Any]) -> Certification:
    """A certification from the `response` of PortOne V1's GET /certifications/{imp_uid}, such as a
    sandbox person's record (`idgate policies test` builds its cases from them)."""
    try:
        payload = msgspec.convert(dict(record), _CertificationPayload)
    except msgspec.ValidationError as exc:
        raise ProviderUnavailable(f"not a PortOne V1 certification: {exc}") from None
    return _to_certification(payload)


def _to_certification(p: _CertificationPayload) -> Certification:
    try:
        birth_date = _birth_date(p)
        phone = re.sub(r"\D", "", p.phone) if p.phone else None
        return Certification(
            imp_uid=p.imp_uid,
            merchant_uid=p.merchant_uid,
            provider=p.pg_provider or "unknown",
            name=p.name or "",
            gender=_GENDERS.get(p.gender or ""),
            birth_date=birth_date,
            phone=phone or None,
            carrier=_CARRIERS.get(p.carrier or ""),
            is_foreigner=_is_foreigner(p),
            ci=p.unique_key or None,
            di=p.unique_in_site or None,
            certified=p.certified,
            certified_at=datetime.fromtimestamp(p.certified_at or 0, UTC),
            origin=p.origin,
        )
    except (ValueError, OverflowError, OSError) as exc:
        raise ProviderUnavailable("PortOne sent a certification with invalid fields.") from exc


def _birth_date(p: _CertificationPayload) -> date:
    if p.birthday:
        return date.fromisoformat(p.birthday)
    if p.birth is not None:
        # The legacy field is unix seconds of 00:00 KST on the birth date.
        return datetime.fromtimestamp(p.birth, SEOUL).date()
    raise ValueError("no birth date")


def _is_foreigner(p: _CertificationPayload) -> bool | None:
    # foreigner_v2 is null when the merchant has no foreigner-flag contract (Danal), where the plain
    # `foreigner` is always false and therefore meaningless.
    if p.foreigner_v2 is not msgspec.UNSET:
        return p.foreigner_v2
    return p.foreigner
