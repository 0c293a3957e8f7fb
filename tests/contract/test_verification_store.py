"""One contract for the VerificationStore port, run against the fake and the SQLite store."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from idgate.domain import (
    CertificationAlreadyUsed,
    Outcome,
    PolicyDecision,
    PreparedRequest,
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
