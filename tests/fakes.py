"""In-memory fakes of the ports, for unit tests. Each is held to the same contract suite as the
real adapter (tests/contract), so they cannot drift from what production does."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import unicodedata
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from idgate.domain import (
    Certification,
    CertificationAlreadyUsed,
    CertificationNotFound,
    Channel,
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
    audit,
    merkle,
    records,
)
from idgate.domain.audit import (
    AuditAccess,
    Bucket,
    Checkpoint,
    ConsistencyProof,
    DecisionFilter,
    DecisionPage,
    InclusionProof,
    LoggedDecision,
    LogHead,
    Stats,
    VerifyReport,
)
from idgate.domain.cases import CasePage, CaseResolution, CaseState, ReviewCase
from idgate.domain.errors import ReviewCaseClosed
from idgate.domain.ports import Progress
from idgate.domain.services import validate_imp_uid
from idgate.testing import certification

T0 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def a_certification(**changes: object) -> Certification:
    """idgate.testing's adult, with short recognisable CI and DI and certified at T0."""
    return certification(
        **{"merchant_uid": "idg_test", "ci": "ci-value", "di": "di-value", "certified_at": T0, **changes}
    )


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
    identity_refs: list[str | None] = field(default_factory=list)  # by decision, as the log keeps them
    identities: dict[str, Certification] = field(default_factory=dict)  # by subject
    review_cases: dict[str, KeptCase] = field(default_factory=dict)  # by the opening decision's id
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
            if binds and self.bound_elsewhere(subject, certification):
                raise IdentityAlreadyBound("bound elsewhere")
            self.consumed.add(decision.imp_uid)
            self.consumed_at[decision.imp_uid] = decision.decided_at
            if prepared_merchant_uid is not None:
                self.used_prepared.add(prepared_merchant_uid)
            if binds and subject is not None:
                self.identities[subject] = certification
            if decision.verdict is Verdict.REVIEW and subject is not None:
                self.review_cases[decision.decision_id] = KeptCase(decision, certification)
            self.decisions.append(decision)
            self.identity_refs.append(fake_identity_ref(certification))

    def bound_elsewhere(self, subject: str | None, certification: Certification) -> bool:
        """The binding rule: one person (by CI, or DI) is bound to one subject."""
        return any(
            (certification.ci and c.ci == certification.ci) or (certification.di and c.di == certification.di)
            for s, c in self.identities.items()
            if s != subject
        )

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


def fake_identity_ref(certification: Certification) -> str | None:
    """A stand-in for the keyed digest the real store logs: a hash of the CI (or DI), never the value."""
    for kind, value in (("ci", certification.ci), ("di", certification.di)):
        if value:
            return f"{kind}:0:{hashlib.sha256(f'fake-key/{kind}/{value.strip()}'.encode()).hexdigest()}"
    return None


@dataclass
class InMemoryDecisionLog:
    """The DecisionLog port over the fake store's decisions: records, tree and proofs computed by the
    domain's own definitions, filters applied in Python. Held to tests/contract/test_decision_log.py."""

    store: InMemoryVerificationStore
    saved: dict[int, Checkpoint] = field(default_factory=dict)
    access_log: list[AuditAccess] = field(default_factory=list)

    def _entries(self) -> list[LoggedDecision]:
        return [
            LoggedDecision(n, records.parse(records.canonical(records.record_of(d, ref))))
            for n, (d, ref) in enumerate(zip(self.store.decisions, self.store.identity_refs, strict=True), 1)
        ]

    def _leaves(self) -> list[bytes]:
        return [audit.leaf_of(e.record) for e in self._entries()]

    @staticmethod
    def _hashes(leaves: list[bytes], ranges: list[tuple[int, int]]) -> list[bytes]:
        levels = dict(merkle.perfect_levels(leaves))
        return [merkle.range_hash(a, b, lambda level, index: levels[level][index]) for a, b in ranges]

    async def head(self) -> LogHead:
        leaves = self._leaves()
        return LogHead(len(leaves), merkle.root_of(leaves))

    async def find(self, decision_id: str) -> LoggedDecision | None:
        return next((e for e in self._entries() if e.decision_id == decision_id), None)

    def _matching(self, where: DecisionFilter) -> list[LoggedDecision]:
        def matches(e: LoggedDecision) -> bool:
            r = e.record
            for name in ("verdict", "subject", "imp_uid", "provider"):
                wanted = getattr(where, name)
                if wanted is not None and r[name] != wanted:
                    return False
            decided = datetime.fromisoformat(r["decided_at"])
            if (where.since and decided < where.since) or (where.until and decided >= where.until):
                return False
            asked = {k: v for k in ("policy", "outcome", "code") if (v := getattr(where, k)) is not None}
            return not asked or any(all(x[k] == v for k, v in asked.items()) for x in r["results"])

        return [e for e in self._entries() if matches(e)]

    async def page(self, where: DecisionFilter, *, before: int | None, limit: int) -> DecisionPage:
        newest_first = [e for e in reversed(self._matching(where)) if before is None or e.seq < before]
        found = newest_first[:limit]
        return DecisionPage(found, found[-1].seq if len(newest_first) > limit else None)

    async def stats(self, where: DecisionFilter, bucket: Bucket) -> Stats:
        verdicts: dict[tuple[datetime, str], int] = {}
        codes: dict[tuple[datetime, str, str], int] = {}
        for e in self._matching(where):
            decided = datetime.fromisoformat(e.record["decided_at"])
            start = decided.replace(minute=0, second=0, microsecond=0)
            if bucket is Bucket.DAY:
                start = start.replace(hour=0)
            verdicts[start, e.record["verdict"]] = verdicts.get((start, e.record["verdict"]), 0) + 1
            for x in e.record["results"]:
                if x["enforced"] and x["outcome"] in ("deny", "error"):
                    key = (start, x["policy"], x["code"])
                    codes[key] = codes.get(key, 0) + 1
        return Stats(
            bucket,
            [(s, v, n) for (s, v), n in sorted(verdicts.items())],
            [(s, p, c, n) for (s, p, c), n in sorted(codes.items())],
        )

    async def export(self, where: DecisionFilter) -> AsyncIterator[LoggedDecision]:
        for entry in self._matching(where):
            yield entry

    async def of_person(self, ci: str, *, limit: int) -> Sequence[LoggedDecision]:
        ref = fake_identity_ref(a_certification(ci=ci))
        return [e for e in reversed(self._entries()) if e.record["identity_ref"] == ref][:limit]

    async def inclusion_proof(self, seq: int, tree_size: int) -> InclusionProof:
        leaves = self._leaves()[:tree_size]
        if not 1 <= seq <= len(leaves):
            raise ValueError("no decision has that seq")
        path = self._hashes(leaves, merkle.inclusion_ranges(seq - 1, tree_size))
        return InclusionProof(seq, tree_size, leaves[seq - 1], path, merkle.root_of(leaves))

    async def consistency_proof(self, old_size: int, new_size: int) -> ConsistencyProof:
        leaves = self._leaves()[:new_size]
        path = self._hashes(leaves, merkle.consistency_ranges(old_size, new_size))
        return ConsistencyProof(
            old_size, new_size, merkle.root_of(leaves[:old_size]), merkle.root_of(leaves), path
        )

    async def checkpoints(self, *, limit: int) -> Sequence[Checkpoint]:
        return [self.saved[size] for size in sorted(self.saved, reverse=True)][:limit]

    async def checkpoint_at(self, size: int) -> Checkpoint | None:
        return self.saved.get(size)

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.saved.setdefault(checkpoint.size, checkpoint)

    async def verify(
        self, signed: Callable[[Checkpoint], bool], progress: Progress | None = None
    ) -> VerifyReport:
        leaves = self._leaves()
        head = await self.head()
        levels = dict(merkle.perfect_levels(leaves)) if leaves else {}
        finding = audit.tree_finding(leaves, levels, head, list(self.saved.values()), signed)
        if progress is not None:
            progress(len(leaves), len(leaves))
        return VerifyReport(len(leaves), len(leaves), len(self.saved), finding)

    async def record_access(self, actor: str, route: str, query: Mapping[str, str]) -> None:
        self.access_log.append(AuditAccess(self.store.clock.now(), actor, route, dict(query)))

    async def accesses(self, *, limit: int) -> Sequence[AuditAccess]:
        return list(reversed(self.access_log))[:limit]


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


def a_result(
    outcome: Outcome, *, policy: str = "p", enforced: bool = True, code: str | None = None
) -> PolicyResult:
    return PolicyResult(
        policy=policy, version="1", outcome=outcome, code=code or outcome.value, message="", enforced=enforced
    )


@dataclass
class InMemoryVerificationHistory:
    """VerificationHistory over the fake store's decisions, by the refs the fake log keeps. Held to
    tests/contract/test_verification_history.py."""

    store: InMemoryVerificationStore

    async def decisions_of_person(self, *, ci: str | None, di: str | None, since: datetime) -> int:
        refs = set()
        if ci:
            refs.add(fake_identity_ref(a_certification(ci=ci)))
        if di:
            refs.add(fake_identity_ref(a_certification(ci=None, di=di)))
        return sum(
            1
            for decision, ref in zip(self.store.decisions, self.store.identity_refs, strict=True)
            if ref in refs and decision.decided_at >= since and decision.channel is not Channel.REVIEW
        )

    async def decisions_of_subject(self, subject: str, *, since: datetime) -> int:
        wanted = unicodedata.normalize("NFC", subject)
        return sum(
            1
            for d in self.store.decisions
            if d.subject is not None
            and unicodedata.normalize("NFC", d.subject) == wanted
            and d.decided_at >= since
            and d.channel is not Channel.REVIEW
        )


@dataclass
class KeptCase:
    """A review case in the fake store: the decision that opened it, and the identity it keeps until
    it closes (None afterwards)."""

    decision: PolicyDecision
    certification: Certification | None
    state: CaseState = CaseState.OPEN
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    note: str | None = None

    def case(self) -> ReviewCase:
        return ReviewCase(
            decision=self.decision,
            state=self.state,
            resolved_at=self.resolved_at,
            resolved_by=self.resolved_by,
        )


@dataclass
class InMemoryReviewCases:
    """ReviewCases over the fake store's cases, binding with its rules and logging to its decisions.
    Held to tests/contract/test_review_cases.py."""

    store: InMemoryVerificationStore

    async def find(self, decision_id: str) -> ReviewCase | None:
        kept = self.store.review_cases.get(decision_id)
        return None if kept is None else kept.case()

    async def open_cases(self, *, opened_after: datetime, before: str | None, limit: int) -> CasePage:
        newest_first = sorted(
            (
                kept.case()
                for decision_id, kept in self.store.review_cases.items()
                if kept.state is CaseState.OPEN
                and kept.decision.decided_at > opened_after
                and (before is None or decision_id < before)
            ),
            key=lambda case: case.decision_id,
            reverse=True,
        )
        found = newest_first[:limit]
        return CasePage(found, found[-1].decision_id if len(newest_first) > limit else None)

    async def opened_until(self, at: datetime, *, limit: int) -> Sequence[ReviewCase]:
        due = [k.case() for k in self.store.review_cases.values() if k.state is CaseState.OPEN]
        return sorted((c for c in due if c.opened_at <= at), key=lambda case: case.opened_at)[:limit]

    async def close(self, resolution: CaseResolution) -> None:
        store = self.store
        async with store._lock:  # one fake store, one lock for its writes
            kept = store.review_cases[resolution.case.decision_id]
            if kept.state is not CaseState.OPEN or kept.certification is None:
                raise ReviewCaseClosed("no longer open")
            subject = resolution.case.subject
            if resolution.binds:
                if store.bound_elsewhere(subject, kept.certification):
                    raise IdentityAlreadyBound("bound elsewhere")
                store.identities[subject] = kept.certification
            store.decisions.append(resolution.entry)
            store.identity_refs.append(fake_identity_ref(kept.certification))
            kept.state, kept.certification = resolution.closing.state, None
            kept.resolved_at, kept.resolved_by, kept.note = resolution.at, resolution.by, resolution.note
