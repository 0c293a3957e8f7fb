"""In-memory fakes of the ports, for unit tests. Each is held to the same contract suite as the
real adapter (tests/contract), so they cannot drift from what production does."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from idgate.domain import (
    Carrier,
    Certification,
    CertificationAlreadyUsed,
    CertificationNotFound,
    Gender,
    IdentityAccess,
    IdentityAlreadyBound,
    Outcome,
    PolicyContext,
    PolicyDecision,
    PolicyResult,
    PreparedRequest,
    Principal,
    Purged,
    RequestQuota,
    RequestState,
    Role,
    TokenInfo,
    TokenNameTaken,
    TooManyRequests,
    Verdict,
    VerifiedIdentity,
)
from idgate.domain.services import validate_imp_uid

T0 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def a_certification(**changes: object) -> Certification:
    base = Certification(
        imp_uid="imp_100000000001",
        merchant_uid="idg_test",
        provider="danal",
        name="홍길동",
        gender=Gender.MALE,
        birth_date=date(1990, 1, 1),
        phone="01012345678",
        carrier=Carrier.SKT,
        is_foreigner=False,
        ci="ci-value",
        di="di-value",
        certified=True,
        certified_at=T0,
        origin=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@dataclass
class FixedClock:
    at: datetime = T0

    def now(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> None:
        self.at += delta


@dataclass
class FakeCertificationProvider:
    certifications: dict[str, Certification] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def add(self, certification: Certification) -> Certification:
        self.certifications[certification.imp_uid] = certification
        return certification

    async def fetch_certification(self, imp_uid: str) -> Certification:
        validate_imp_uid(imp_uid)
        self.calls.append(imp_uid)
        try:
            return self.certifications[imp_uid]
        except KeyError:
            raise CertificationNotFound("no such certification") from None


@dataclass
class InMemoryVerificationStore:
    """VerificationStore, IdentityDirectory and IdentityVault in memory, with the same binding rules."""

    prepared: dict[str, PreparedRequest] = field(default_factory=dict)
    used_prepared: set[str] = field(default_factory=set)
    consumed: set[str] = field(default_factory=set)
    consumed_at: dict[str, datetime] = field(default_factory=dict)
    request_counts: dict[tuple[str, datetime], int] = field(default_factory=dict)
    decisions: list[PolicyDecision] = field(default_factory=list)
    identities: dict[str, Certification] = field(default_factory=dict)  # by subject
    access_log: list[IdentityAccess] = field(default_factory=list)
    clock: FixedClock = field(default_factory=FixedClock)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def save_prepared_request(
        self, request: PreparedRequest, *, quota: RequestQuota | None = None
    ) -> None:
        if quota is not None:
            window_start, retry_after = quota.window_at(request.created_at)
            key = (quota.client, window_start)
            if self.request_counts.get(key, 0) >= quota.limit:
                raise TooManyRequests("too many prepares from this address", retry_after_seconds=retry_after)
            self.request_counts[key] = self.request_counts.get(key, 0) + 1
        self.prepared[request.merchant_uid] = request

    async def purge(
        self, *, prepared_expired_before: datetime, consumed_before: datetime, counted_before: datetime
    ) -> Purged:
        prepared = [uid for uid, r in self.prepared.items() if r.expires_at < prepared_expired_before]
        consumed = [uid for uid, at in self.consumed_at.items() if at < consumed_before]
        counts = [key for key in self.request_counts if key[1] < counted_before]
        for uid in prepared:
            del self.prepared[uid]
            self.used_prepared.discard(uid)
        for uid in consumed:
            del self.consumed_at[uid]
            self.consumed.discard(uid)
        for key in counts:
            del self.request_counts[key]
        return Purged(len(prepared), len(consumed), len(counts))

    async def find_prepared_request(self, merchant_uid: str) -> PreparedRequest | None:
        if merchant_uid in self.used_prepared:
            return None
        return self.prepared.get(merchant_uid)

    async def is_consumed(self, imp_uid: str) -> bool:
        return imp_uid in self.consumed

    async def request_state(self, imp_uid: str, merchant_uid: str | None) -> RequestState:
        prepared = await self.find_prepared_request(merchant_uid) if merchant_uid is not None else None
        return RequestState(consumed=imp_uid in self.consumed, prepared=prepared)

    async def record_verification(
        self, *, decision: PolicyDecision, certification: Certification, prepared_merchant_uid: str | None
    ) -> None:
        async with self._lock:
            if decision.imp_uid in self.consumed or prepared_merchant_uid in self.used_prepared:
                raise CertificationAlreadyUsed("already used")
            subject = decision.subject
            binds = decision.verdict is Verdict.ALLOW and subject is not None
            others = [c for s, c in self.identities.items() if s != subject]
            if binds and any(
                (certification.ci and c.ci == certification.ci)
                or (certification.di and c.di == certification.di)
                for c in others
            ):
                raise IdentityAlreadyBound("bound elsewhere")
            self.consumed.add(decision.imp_uid)
            self.consumed_at[decision.imp_uid] = decision.decided_at
            if prepared_merchant_uid is not None:
                self.used_prepared.add(prepared_merchant_uid)
            if binds and subject is not None:
                self.identities[subject] = certification
            self.decisions.append(decision)

    async def subjects_with_ci(self, ci: str) -> list[str]:
        return sorted(s for s, c in self.identities.items() if c.ci == ci.strip())

    async def subjects_with_di(self, di: str) -> list[str]:
        return sorted(s for s, c in self.identities.items() if c.di == di.strip())

    async def read_identity(self, subject: str, accessor: Principal) -> VerifiedIdentity | None:
        c = self.identities.get(subject)
        if c is None:
            return None
        self._record_access(accessor, "read", subject)
        return VerifiedIdentity(
            subject=subject,
            name=c.name,
            birth_date=c.birth_date,
            gender=c.gender,
            phone=c.phone,
            carrier=c.carrier,
            is_foreigner=c.is_foreigner,
            provider=c.provider,
            certified_at=c.certified_at,
        )

    async def erase_identity(self, subject: str, accessor: Principal) -> bool:
        if self.identities.pop(subject, None) is None:
            return False
        self._record_access(accessor, "erase", subject)
        return True

    async def accesses(self, subject: str) -> list[IdentityAccess]:
        return [a for a in self.access_log if a.subject == subject]

    def _record_access(self, accessor: Principal, action: str, subject: str) -> None:
        self.access_log.append(
            IdentityAccess(
                at=self.clock.now(), actor=accessor.name, role=accessor.role, action=action, subject=subject
            )
        )

    async def get_decision(self, decision_id: str) -> PolicyDecision | None:
        return next((d for d in self.decisions if d.decision_id == decision_id), None)


@dataclass
class FakeAccessTokens:
    """API tokens in memory; like the real adapter it keeps only a hash of each token."""

    by_hash: dict[str, TokenInfo] = field(default_factory=dict)  # SHA-256 of the token → what it is
    clock: FixedClock = field(default_factory=FixedClock)

    async def create(self, name: str, role: Role) -> str:
        if any(info.name == name for info in self.by_hash.values()):
            raise TokenNameTaken(f"a token named {name!r} already exists")
        token = "idgt_" + secrets.token_urlsafe(32)
        info = TokenInfo(name=name, role=role, created_at=self.clock.now(), revoked_at=None)
        self.by_hash[_sha256(token)] = info
        return token

    async def authenticate(self, token: str) -> Principal | None:
        info = self.by_hash.get(_sha256(token))
        if info is None or info.revoked_at is not None:
            return None
        return Principal(name=info.name, role=info.role)

    async def list_tokens(self) -> list[TokenInfo]:
        return sorted(self.by_hash.values(), key=lambda info: info.created_at)

    async def revoke(self, name: str) -> bool:
        for digest, info in self.by_hash.items():
            if info.name == name and info.revoked_at is None:
                self.by_hash[digest] = replace(info, revoked_at=self.clock.now())
                return True
        return False


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class StaticPolicyEvaluator:
    """Returns the same results for every certification; records what it was asked."""

    results: Sequence[PolicyResult] = ()
    policy_set: str = "sha256:static"
    enabled: Sequence[str] = ("static",)
    seen: list[tuple[Certification, PolicyContext]] = field(default_factory=list)

    async def evaluate(self, certification: Certification, context: PolicyContext) -> Sequence[PolicyResult]:
        self.seen.append((certification, context))
        return list(self.results)


def a_result(outcome: Outcome, *, policy: str = "p", enforced: bool = True) -> PolicyResult:
    return PolicyResult(
        policy=policy, version="1", outcome=outcome, code=outcome.value, message="", enforced=enforced
    )
