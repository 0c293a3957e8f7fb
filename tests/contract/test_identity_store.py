"""One contract for the IdentityDirectory and IdentityVault ports (binding, lookup, read, erase and
the access log), run against the fake and the SQLite store."""

from __future__ import annotations

from dataclasses import replace
from itertools import count

import pytest

from idgate.domain import (
    Certification,
    CertificationAlreadyUsed,
    IdentityAlreadyBound,
    Outcome,
    PolicyDecision,
    Principal,
    Role,
    Verdict,
    new_decision_id,
)
from idgate.entrypoints.bootstrap import IdentityStore
from tests.fakes import T0, a_certification, a_result

SERVICE = Principal(name="shop-backend", role=Role.SERVICE)
ADMIN = Principal(name="dpo", role=Role.ADMIN)
_serial = count(1)


def next_imp_uid() -> str:
    return f"imp_{next(_serial)}"


async def bind(
    store: IdentityStore,
    subject: str,
    person: Certification,
    verdict: Verdict = Verdict.ALLOW,
    imp_uid: str | None = None,
) -> PolicyDecision:
    imp_uid = imp_uid or next_imp_uid()
    decision = PolicyDecision(
        decision_id=new_decision_id(T0),
        imp_uid=imp_uid,
        subject=subject,
        verdict=verdict,
        results=(a_result(Outcome.ALLOW),),
        decided_at=T0,
        policy_set="sha256:contract",
        provider=person.provider,
    )
    await store.record_verification(
        decision=decision, certification=replace(person, imp_uid=imp_uid), prepared_merchant_uid=None
    )
    return decision


HONG = a_certification(ci="CI-hong", di="DI-hong", phone="01011112222")
KIM = a_certification(name="김민지", ci="CI-kim", di="DI-kim", phone="01033334444")


async def test_an_allowed_subject_is_found_by_ci_and_di(store: IdentityStore) -> None:
    await bind(store, "acct-1", HONG)
    await bind(store, "acct-2", KIM)
    assert await store.subjects_with_ci("CI-hong") == ["acct-1"]
    assert await store.subjects_with_di("DI-kim") == ["acct-2"]
    assert await store.subjects_with_ci("CI-nobody") == []


async def test_denies_and_reviews_store_no_identity(store: IdentityStore) -> None:
    await bind(store, "acct-1", HONG, Verdict.DENY)
    await bind(store, "acct-2", KIM, Verdict.REVIEW)
    assert await store.subjects_with_ci("CI-hong") == []
    assert await store.read_identity("acct-2", SERVICE) is None


async def test_a_person_binds_to_one_subject_and_a_refused_bind_writes_nothing(store: IdentityStore) -> None:
    await bind(store, "acct-1", HONG)
    refused = next_imp_uid()
    with pytest.raises(IdentityAlreadyBound):
        await bind(store, "acct-2", replace(HONG, phone="01099990000"), imp_uid=refused)
    assert await store.subjects_with_ci("CI-hong") == ["acct-1"]
    assert await store.read_identity("acct-2", SERVICE) is None
    assert not await store.is_consumed(refused)  # the refused verification consumed nothing


async def test_verifying_again_replaces_the_subjects_identity(store: IdentityStore) -> None:
    await bind(store, "acct-1", HONG)
    await bind(store, "acct-1", KIM)
    assert await store.subjects_with_ci("CI-hong") == []
    assert await store.subjects_with_ci("CI-kim") == ["acct-1"]
    identity = await store.read_identity("acct-1", SERVICE)
    assert identity is not None
    assert identity.name == "김민지"


async def test_without_ci_the_person_is_found_by_di_and_binds_once(store: IdentityStore) -> None:
    kakao = replace(HONG, ci=None, di="DI-kakao")
    await bind(store, "acct-1", kakao)
    # DI is per merchant, and one idgate is one merchant: one DI is one person, bound once like a CI.
    with pytest.raises(IdentityAlreadyBound):
        await bind(store, "acct-2", kakao)
    assert await store.subjects_with_di("DI-kakao") == ["acct-1"]
    await bind(store, "acct-1", kakao)  # the same subject verifying again is no conflict
    assert await store.subjects_with_di("DI-kakao") == ["acct-1"]


async def test_reading_returns_the_identity_and_records_who_read_it(store: IdentityStore) -> None:
    await bind(store, "acct-1", HONG)
    identity = await store.read_identity("acct-1", SERVICE)
    assert identity is not None
    assert (identity.subject, identity.name, identity.birth_date, identity.phone) == (
        "acct-1",
        HONG.name,
        HONG.birth_date,
        HONG.phone,
    )
    assert (identity.gender, identity.carrier, identity.is_foreigner) == (
        HONG.gender,
        HONG.carrier,
        HONG.is_foreigner,
    )
    [access] = await store.accesses("acct-1")
    assert (access.actor, access.role, access.action, access.subject) == (
        "shop-backend",
        Role.SERVICE,
        "read",
        "acct-1",
    )


async def test_reading_an_unknown_subject_records_nothing(store: IdentityStore) -> None:
    assert await store.read_identity("acct-unknown", SERVICE) is None
    assert await store.accesses("acct-unknown") == []


async def test_erasure_removes_the_identity_and_is_recorded_once(store: IdentityStore) -> None:
    await bind(store, "acct-1", HONG)
    assert await store.erase_identity("acct-1", ADMIN)
    assert not await store.erase_identity("acct-1", ADMIN)  # nothing left: nothing erased, nothing recorded
    assert await store.read_identity("acct-1", SERVICE) is None
    assert await store.subjects_with_ci("CI-hong") == []
    assert [(a.actor, a.action) for a in await store.accesses("acct-1")] == [("dpo", "erase")]
    await bind(store, "acct-2", HONG)  # the person is free to bind again
    assert await store.subjects_with_ci("CI-hong") == ["acct-2"]


async def test_a_consumed_imp_uid_cannot_bind(store: IdentityStore) -> None:
    decision = await bind(store, "acct-1", HONG)
    with pytest.raises(CertificationAlreadyUsed):
        await store.record_verification(
            decision=replace(decision, decision_id=new_decision_id(T0), subject="acct-2"),
            certification=replace(KIM, imp_uid=decision.imp_uid),
            prepared_merchant_uid=None,
        )
    assert await store.subjects_with_ci("CI-kim") == []
