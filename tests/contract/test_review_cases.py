"""The ReviewCases contract: the in-memory fake and the SQL adapter on SQLite and PostgreSQL alike.

Cases are opened the one way production opens them, by `VerificationStore.record_verification` of
a review decision; they are closed through the port, with resolutions made by the domain's own
`cases.resolution`. What a closing binds is read back through the store's IdentityVault and
IdentityDirectory, and what it logs through the DecisionLog of the same implementation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from idgate.adapters.crypto import Keyring, KeyringSource
from idgate.adapters.store import (
    DatabaseOptions,
    SqlDecisionLog,
    SqlReviewCases,
    SqlVerificationStore,
    VerifiedKeyring,
    open_database,
)
from idgate.domain import (
    Certification,
    Channel,
    DecisionLog,
    IdentityAlreadyBound,
    Outcome,
    PolicyDecision,
    Principal,
    ReviewCaseClosed,
    ReviewCases,
    Role,
    Verdict,
    new_decision_id,
    records,
)
from idgate.domain.audit import DecisionFilter
from idgate.domain.cases import CaseState, Closing, ReviewCase, ReviewReason, resolution
from idgate.entrypoints.bootstrap import IdentityStore
from tests.databases import TestDatabase
from tests.fakes import (
    FixedClock,
    InMemoryDecisionLog,
    InMemoryReviewCases,
    InMemoryVerificationStore,
    a_certification,
    a_result,
)

SERVICE = Principal(name="shop-backend", role=Role.SERVICE)
HONG = a_certification(ci="CI-hong", di="DI-hong", phone="01011112222", name="홍길동")
KIM = a_certification(ci="CI-kim", di="DI-kim", phone="01033334444", name="김민지")
LONG_AGO = FixedClock().now() - timedelta(days=365)
_serial = count(1)


@dataclass
class Reviewed:
    store: IdentityStore
    cases: ReviewCases
    log: DecisionLog
    clock: FixedClock


@pytest.fixture
async def reviewed(implementation: TestDatabase | None, tmp_path: Path) -> AsyncIterator[Reviewed]:
    clock = FixedClock()
    if implementation is None:
        store = InMemoryVerificationStore(clock=clock)
        yield Reviewed(store, InMemoryReviewCases(store), InMemoryDecisionLog(store), clock)
        return
    keys = KeyringSource(tmp_path / "keyring.json")
    keys.save(Keyring.generate(), create=True)
    async with open_database(DatabaseOptions(url=implementation.url, pool_size=4)) as db:
        keyring = VerifiedKeyring(keys.current, db.engine, clock)
        yield Reviewed(
            SqlVerificationStore(db, keyring, clock),
            SqlReviewCases(db, keyring, clock),
            SqlDecisionLog(db, keyring, clock),
            clock,
        )


async def decide(
    reviewed: Reviewed, subject: str | None, person: Certification, verdict: Verdict = Verdict.REVIEW
) -> PolicyDecision:
    """A verification of `person` for `subject`, a minute after the one before; review by default."""
    reviewed.clock.advance(timedelta(minutes=1))
    imp_uid = f"imp_{next(_serial):012d}"
    asked = Outcome.REVIEW if verdict is Verdict.REVIEW else Outcome(verdict.value)
    decision = PolicyDecision(
        decision_id=new_decision_id(reviewed.clock.now()),
        imp_uid=imp_uid,
        subject=subject,
        verdict=verdict,
        results=(
            a_result(Outcome.ALLOW, policy="age_limit", code="age_ok"),
            a_result(asked, policy="duplicate_identity", code="identity_bound_elsewhere"),
            a_result(Outcome.REVIEW, policy="device_risk", code="new_device", enforced=False),
        ),
        decided_at=reviewed.clock.now(),
        policy_set="sha256:contract",
        provider=person.provider,
    )
    await reviewed.store.record_verification(
        decision=decision, certification=replace(person, imp_uid=imp_uid), prepared_merchant_uid=None
    )
    return decision


async def open_case(reviewed: Reviewed, subject: str, person: Certification) -> ReviewCase:
    decision = await decide(reviewed, subject, person)
    case = await reviewed.cases.find(decision.decision_id)
    assert case is not None
    return case


async def close(reviewed: Reviewed, case: ReviewCase, closing: Closing, note: str | None = "checked") -> None:
    reviewed.clock.advance(timedelta(seconds=30))
    by = None if closing is Closing.EXPIRED else "reviewer-lee"
    made = resolution(case, closing, at=reviewed.clock.now(), by=by, note=note if by else None)
    await reviewed.cases.close(made)


async def entries(reviewed: Reviewed) -> list[dict[str, Any]]:
    return [dict(e.record) async for e in reviewed.log.export(DecisionFilter())]


async def test_a_review_with_a_subject_opens_a_case_and_nothing_else_does(reviewed: Reviewed) -> None:
    review = await decide(reviewed, "acct-1", HONG)
    unbound = await decide(reviewed, None, KIM)
    allowed = await decide(reviewed, "acct-2", KIM, Verdict.ALLOW)
    denied = await decide(reviewed, "acct-3", replace(KIM, ci="CI-other", di="DI-other"), Verdict.DENY)
    case = await reviewed.cases.find(review.decision_id)
    assert case is not None
    assert (case.decision, case.state, case.resolved_at, case.resolved_by) == (
        review,
        CaseState.OPEN,
        None,
        None,
    )
    assert case.subject == "acct-1"
    assert case.opened_at == review.decided_at
    # The enforced results that asked for review; a shadow policy's does not count.
    assert case.reasons() == (ReviewReason("duplicate_identity", "identity_bound_elsewhere"),)
    for other in (unbound, allowed, denied):
        assert await reviewed.cases.find(other.decision_id) is None
    assert await reviewed.store.read_identity("acct-1", SERVICE) is None  # kept, not bound


async def test_open_cases_run_newest_first_in_pages_from_a_time_on(reviewed: Reviewed) -> None:
    made = [
        await open_case(reviewed, f"acct-{n}", replace(HONG, ci=f"CI-{n}", di=f"DI-{n}")) for n in range(5)
    ]
    await close(reviewed, made[2], Closing.RESOLVED_DENY)
    newest_first = [made[4], made[3], made[1], made[0]]

    first = await reviewed.cases.open_cases(opened_after=LONG_AGO, before=None, limit=3)
    assert [c.decision_id for c in first.cases] == [c.decision_id for c in newest_first[:3]]
    assert first.next_before == made[1].decision_id
    rest = await reviewed.cases.open_cases(opened_after=LONG_AGO, before=first.next_before, limit=3)
    assert [c.decision_id for c in rest.cases] == [made[0].decision_id]
    assert rest.next_before is None
    assert all(c.state is CaseState.OPEN for c in first.cases)

    # Strictly after: a case opened at the instant given is one that expires at the instant it is asked.
    recent = await reviewed.cases.open_cases(opened_after=made[3].opened_at, before=None, limit=10)
    assert [c.decision_id for c in recent.cases] == [made[4].decision_id]
    just_before = made[3].opened_at - timedelta(microseconds=1)
    recent = await reviewed.cases.open_cases(opened_after=just_before, before=None, limit=10)
    assert [c.decision_id for c in recent.cases] == [made[4].decision_id, made[3].decision_id]


async def test_resolving_allow_binds_the_kept_identity_as_an_allow_would(reviewed: Reviewed) -> None:
    case = await open_case(reviewed, "acct-1", HONG)
    await close(reviewed, case, Closing.RESOLVED_ALLOW)

    identity = await reviewed.store.read_identity("acct-1", SERVICE)
    assert identity is not None
    assert (identity.name, identity.phone, identity.birth_date, identity.carrier) == (
        HONG.name,
        HONG.phone,
        HONG.birth_date,
        HONG.carrier,
    )
    assert (identity.provider, identity.certified_at) == (HONG.provider, HONG.certified_at)
    assert await reviewed.store.subjects_with_ci("CI-hong") == ["acct-1"]
    assert await reviewed.store.subjects_with_di("DI-hong") == ["acct-1"]
    closed = await reviewed.cases.find(case.decision_id)
    assert closed is not None
    assert (closed.state, closed.resolved_by) == (CaseState.ALLOWED, "reviewer-lee")
    assert closed.resolved_at == reviewed.clock.now()
    # Once bound, the person is someone else's duplicate like any bound person.
    with pytest.raises(IdentityAlreadyBound):
        await decide(reviewed, "acct-2", HONG, Verdict.ALLOW)


async def test_the_closing_is_a_log_entry_of_its_own_beside_the_opening_decision(reviewed: Reviewed) -> None:
    case = await open_case(reviewed, "acct-1", HONG)
    await close(reviewed, case, Closing.RESOLVED_ALLOW, note="홍길동 called; ID card seen")

    opening, closing = await entries(reviewed)
    for name in ("imp_uid", "subject", "provider", "identity_ref", "policy_set"):
        assert closing[name] == opening[name], name
    assert opening["identity_ref"] is not None
    assert (closing["verdict"], closing["channel"], closing["caller"]) == ("allow", "review", "reviewer-lee")
    assert closing["decision_id"] != opening["decision_id"]
    [result] = closing["results"]
    assert (result["policy"], result["outcome"], result["code"]) == ("review_case", "allow", "resolved_allow")
    assert case.decision_id in result["message"]
    assert "홍길동" not in records.canonical(closing).decode()  # the note stays out of the log
    assert records.decision_of(closing).channel is Channel.REVIEW
    assert (await reviewed.log.verify(lambda _: True)).ok


async def test_resolving_deny_binds_nothing_and_a_case_closes_once(reviewed: Reviewed) -> None:
    case = await open_case(reviewed, "acct-1", HONG)
    await close(reviewed, case, Closing.RESOLVED_DENY)
    assert await reviewed.store.read_identity("acct-1", SERVICE) is None
    assert await reviewed.store.subjects_with_ci("CI-hong") == []
    for again in (Closing.RESOLVED_ALLOW, Closing.RESOLVED_DENY, Closing.EXPIRED):
        with pytest.raises(ReviewCaseClosed):
            await close(reviewed, case, again)
    assert await reviewed.store.read_identity("acct-1", SERVICE) is None
    logged = await entries(reviewed)
    assert [(e["verdict"], e["channel"]) for e in logged] == [("review", "http"), ("deny", "review")]
    closed = await reviewed.cases.find(case.decision_id)
    assert closed is not None
    assert closed.state is CaseState.DENIED
    assert (await reviewed.cases.open_cases(opened_after=LONG_AGO, before=None, limit=10)).cases == []


async def test_an_allow_that_would_bind_the_person_twice_changes_nothing(reviewed: Reviewed) -> None:
    case = await open_case(reviewed, "acct-2", HONG)
    await decide(reviewed, "acct-1", HONG, Verdict.ALLOW)  # bound elsewhere meanwhile
    before = await entries(reviewed)
    with pytest.raises(IdentityAlreadyBound):
        await close(reviewed, case, Closing.RESOLVED_ALLOW)
    assert await entries(reviewed) == before
    assert await reviewed.store.subjects_with_ci("CI-hong") == ["acct-1"]
    assert await reviewed.store.read_identity("acct-2", SERVICE) is None
    still = await reviewed.cases.find(case.decision_id)
    assert still is not None
    assert still.state is CaseState.OPEN
    await close(reviewed, case, Closing.RESOLVED_DENY)  # and it can still be resolved otherwise
    closed = await reviewed.cases.find(case.decision_id)
    assert closed is not None
    assert closed.state is CaseState.DENIED


async def test_a_reviewer_rebinding_a_subject_replaces_what_it_had(reviewed: Reviewed) -> None:
    case = await open_case(reviewed, "acct-1", HONG)
    await decide(reviewed, "acct-1", KIM, Verdict.ALLOW)
    await close(reviewed, case, Closing.RESOLVED_ALLOW)
    identity = await reviewed.store.read_identity("acct-1", SERVICE)
    assert identity is not None
    assert identity.name == HONG.name
    assert await reviewed.store.subjects_with_ci("CI-kim") == []


async def test_cases_due_to_expire_oldest_first_and_their_expiry(reviewed: Reviewed) -> None:
    made = [
        await open_case(reviewed, f"acct-{n}", replace(HONG, ci=f"CI-{n}", di=f"DI-{n}")) for n in range(4)
    ]
    await close(reviewed, made[0], Closing.RESOLVED_ALLOW)
    until = made[3].opened_at - timedelta(microseconds=1)
    due = await reviewed.cases.opened_until(until, limit=10)
    assert [c.decision_id for c in due] == [made[1].decision_id, made[2].decision_id]
    assert [c.decision_id for c in await reviewed.cases.opened_until(until, limit=1)] == [made[1].decision_id]
    # At the instant it opened and after: due (a case expires at opened_at + expire_after, inclusive).
    inclusive = await reviewed.cases.opened_until(made[3].opened_at, limit=10)
    assert [c.decision_id for c in inclusive][-1] == made[3].decision_id
    await close(reviewed, due[0], Closing.EXPIRED)
    expired = await reviewed.cases.find(made[1].decision_id)
    assert expired is not None
    assert (expired.state, expired.resolved_by) == (CaseState.EXPIRED, None)
    assert await reviewed.store.read_identity("acct-1", SERVICE) is None
    last = (await entries(reviewed))[-1]
    assert (last["verdict"], last["caller"], last["results"][0]["code"]) == ("deny", None, "expired")
    assert [c.decision_id for c in await reviewed.cases.opened_until(until, limit=10)] == [
        made[2].decision_id
    ]


async def test_of_two_closings_at_once_exactly_one_happens(reviewed: Reviewed) -> None:
    case = await open_case(reviewed, "acct-1", HONG)
    at = reviewed.clock.now() + timedelta(seconds=1)
    attempts = [
        resolution(case, Closing.RESOLVED_ALLOW, at=at, by="reviewer-lee", note="ok"),
        resolution(case, Closing.RESOLVED_DENY, at=at, by="reviewer-park", note="no"),
        resolution(case, Closing.EXPIRED, at=at, by=None, note=None),
    ]
    outcomes = await asyncio.gather(*(reviewed.cases.close(r) for r in attempts), return_exceptions=True)
    assert sum(o is None for o in outcomes) == 1, outcomes
    assert all(isinstance(o, ReviewCaseClosed) for o in outcomes if o is not None), outcomes
    closed = await reviewed.cases.find(case.decision_id)
    assert closed is not None
    winner = attempts[outcomes.index(None)]
    assert closed.state is winner.closing.state
    assert len(await entries(reviewed)) == 2
    bound = await reviewed.store.read_identity("acct-1", SERVICE)
    assert (bound is not None) == (winner.closing is Closing.RESOLVED_ALLOW)
    assert (await reviewed.log.verify(lambda _: True)).ok
