"""One contract for the VerificationStore port, run against the fake and the SQL store on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from idgate.domain import (
    CertificationAlreadyUsed,
    Outcome,
    PolicyDecision,
    PreparedRequest,
    RequestQuota,
    TooManyRequests,
    Verdict,
    VerificationStore,
    new_decision_id,
)
from tests.fakes import T0, a_certification, a_result


def a_decision(imp_uid: str = "imp_1", verdict: Verdict = Verdict.ALLOW) -> PolicyDecision:
    return PolicyDecision(
        decision_id=new_decision_id(T0),
        imp_uid=imp_uid,
        subject="user-1",
        verdict=verdict,
        results=(a_result(Outcome.ALLOW, policy="a"), a_result(Outcome.DENY, policy="b", enforced=False)),
        decided_at=T0,
        policy_set="sha256:x",
        provider="danal",
    )


def a_prepared(merchant_uid: str = "idg_1") -> PreparedRequest:
    return PreparedRequest(
        merchant_uid=merchant_uid, subject="user-1", created_at=T0, expires_at=T0 + timedelta(minutes=15)
    )


async def test_a_decision_round_trips(store: VerificationStore) -> None:
    decision = a_decision()
    await store.record_verification(
        decision=decision, certification=a_certification(), prepared_merchant_uid=None
    )
    assert await store.get_decision(decision.decision_id) == decision
    assert await store.get_decision("dec_missing") is None


async def test_an_imp_uid_is_consumed_exactly_once(store: VerificationStore) -> None:
    assert not await store.is_consumed("imp_1")
    await store.record_verification(
        decision=a_decision(), certification=a_certification(), prepared_merchant_uid=None
    )
    assert await store.is_consumed("imp_1")
    second = a_decision()
    with pytest.raises(CertificationAlreadyUsed):
        await store.record_verification(
            decision=second, certification=a_certification(), prepared_merchant_uid=None
        )
    assert await store.get_decision(second.decision_id) is None  # nothing half-written


async def test_concurrent_consumption_has_one_winner(store: VerificationStore) -> None:
    decisions = [a_decision() for _ in range(8)]
    outcomes = await asyncio.gather(
        *(
            store.record_verification(decision=d, certification=a_certification(), prepared_merchant_uid=None)
            for d in decisions
        ),
        return_exceptions=True,
    )
    assert sum(o is None for o in outcomes) == 1
    assert all(isinstance(o, CertificationAlreadyUsed) for o in outcomes if o is not None)
    stored = [await store.get_decision(d.decision_id) for d in decisions]
    assert sum(s is not None for s in stored) == 1


async def test_prepared_requests_are_single_use(store: VerificationStore) -> None:
    prepared = a_prepared()
    await store.save_prepared_request(prepared)
    assert await store.find_prepared_request("idg_1") == prepared
    assert await store.find_prepared_request("idg_other") is None
    await store.record_verification(
        decision=a_decision("imp_1"), certification=a_certification(), prepared_merchant_uid="idg_1"
    )
    assert await store.find_prepared_request("idg_1") is None
    late = a_decision("imp_2")
    with pytest.raises(CertificationAlreadyUsed):
        await store.record_verification(
            decision=late, certification=a_certification(), prepared_merchant_uid="idg_1"
        )
    assert not await store.is_consumed("imp_2")  # the failed attempt consumed nothing
    assert await store.get_decision(late.decision_id) is None


def prepared_at(at: datetime, n: int) -> PreparedRequest:
    return PreparedRequest(
        merchant_uid=f"idg_{n}", subject=None, created_at=at, expires_at=at + timedelta(minutes=15)
    )


async def test_a_quota_counts_each_client_in_its_window_and_keeps_nothing_past_it(
    store: VerificationStore,
) -> None:
    quota = RequestQuota(client="198.51.100.7", limit=3, window=timedelta(minutes=1))
    start, _ = quota.window_at(T0)
    for n in range(3):
        await store.save_prepared_request(prepared_at(start + timedelta(seconds=n), n), quota=quota)
    with pytest.raises(TooManyRequests) as refused:
        await store.save_prepared_request(prepared_at(start + timedelta(seconds=20), 3), quota=quota)
    assert refused.value.retry_after_seconds == 40  # until the window ends
    assert await store.find_prepared_request("idg_3") is None  # refused: nothing kept
    other = RequestQuota(client="203.0.113.9", limit=3, window=timedelta(minutes=1))
    await store.save_prepared_request(prepared_at(start + timedelta(seconds=21), 4), quota=other)
    await store.save_prepared_request(prepared_at(start + timedelta(seconds=22), 5))  # no quota: no limit
    await store.save_prepared_request(
        prepared_at(start + timedelta(minutes=1), 6), quota=quota
    )  # next window
    assert await store.find_prepared_request("idg_6") is not None


async def test_a_purge_removes_what_replay_protection_no_longer_needs_and_no_decision(
    store: VerificationStore,
) -> None:
    for n, at in enumerate([T0 - timedelta(days=3), T0 - timedelta(hours=1), T0]):
        await store.save_prepared_request(prepared_at(at, n))  # expire 15 minutes later
        decision = replace(a_decision(f"imp_{n}"), decided_at=at)
        await store.record_verification(
            decision=decision, certification=a_certification(), prepared_merchant_uid=None
        )
    purged = await store.purge(
        prepared_expired_before=T0 - timedelta(minutes=30),
        consumed_before=T0 - timedelta(days=1),
        counted_before=T0,
    )
    assert (purged.prepared_requests, purged.consumed_certifications) == (2, 1)
    assert await store.find_prepared_request("idg_0") is None
    assert await store.find_prepared_request("idg_2") is not None
    assert not await store.is_consumed("imp_0")
    assert await store.is_consumed("imp_1")
    again = await store.purge(
        prepared_expired_before=T0 - timedelta(minutes=30),
        consumed_before=T0 - timedelta(days=1),
        counted_before=T0,
    )
    assert (again.prepared_requests, again.consumed_certifications) == (0, 0)
