"""The DecisionLog contract: the in-memory fake and the SQL log on SQLite and PostgreSQL answer alike.

Decisions go in the one way production appends them, `VerificationStore.record_verification`; every
answer is then held to the domain's own definitions (records.canonical, merkle) rather than to the
implementation's idea of itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from idgate.adapters.crypto import Keyring, KeyringSource, SigningKeyFile
from idgate.adapters.store import (
    DatabaseOptions,
    SqlDecisionLog,
    SqlVerificationStore,
    VerifiedKeyring,
    open_database,
)
from idgate.domain import DecisionLog, Outcome, PolicyDecision, Verdict, merkle, new_decision_id, records
from idgate.domain.audit import Bucket, DecisionFilter, Tampering
from idgate.entrypoints.bootstrap import IdentityStore
from tests.databases import TestDatabase
from tests.fakes import (
    T0,
    FixedClock,
    InMemoryDecisionLog,
    InMemoryVerificationStore,
    a_certification,
    a_result,
)

EVERYTHING = DecisionFilter()


@dataclass
class Logged:
    store: IdentityStore
    log: DecisionLog
    clock: FixedClock


@pytest.fixture
async def logged(implementation: TestDatabase | None, tmp_path: Path) -> AsyncIterator[Logged]:
    clock = FixedClock()
    if implementation is None:
        store = InMemoryVerificationStore(clock=clock)
        yield Logged(store, InMemoryDecisionLog(store), clock)
        return
    keys = KeyringSource(tmp_path / "keyring.json")
    keys.save(Keyring.generate(), create=True)
    async with open_database(DatabaseOptions(url=implementation.url, pool_size=4)) as db:
        keyring = VerifiedKeyring(keys.current, db.engine, clock)
        yield Logged(SqlVerificationStore(db, keyring, clock), SqlDecisionLog(db, keyring, clock), clock)


async def decide(
    logged: Logged,
    n: int,
    *,
    verdict: Verdict = Verdict.ALLOW,
    code: str = "age_ok",
    provider: str = "danal",
    ci: str | None = None,
) -> PolicyDecision:
    """Decision n (its own imp_uid, subject and person), an hour after the one before."""
    logged.clock.advance(timedelta(hours=1))
    outcome = Outcome.ALLOW if verdict is Verdict.ALLOW else Outcome.DENY
    decision = PolicyDecision(
        decision_id=new_decision_id(logged.clock.now()),
        imp_uid=f"imp_{n:012d}",
        subject=f"acct-{n}" if verdict is Verdict.ALLOW else None,
        verdict=verdict,
        results=(a_result(outcome, policy="age_limit", code=code), a_result(Outcome.ALLOW, policy="dup")),
        decided_at=logged.clock.now(),
        policy_set="sha256:ab",
        provider=provider,
    )
    certification = a_certification(imp_uid=decision.imp_uid, ci=ci or f"ci-{n}", di=f"di-{n}")
    await logged.store.record_verification(
        decision=decision, certification=certification, prepared_merchant_uid=None
    )
    return decision


async def a_log(logged: Logged) -> list[PolicyDecision]:
    """Six decisions: allows, two under-age denials, one from another provider, one person twice."""
    return [
        await decide(logged, 1),
        await decide(logged, 2, verdict=Verdict.DENY, code="under_age"),
        await decide(logged, 3, provider="inicis_unified"),
        await decide(logged, 4, verdict=Verdict.DENY, code="under_age", ci="ci-1"),
        await decide(logged, 5),
        await decide(logged, 6, verdict=Verdict.DENY, code="over_age"),
    ]


async def test_an_empty_log(logged: Logged) -> None:
    head = await logged.log.head()
    assert (head.size, head.root) == (0, merkle.EMPTY_ROOT)
    assert (await logged.log.page(EVERYTHING, before=None, limit=10)).decisions == []
    assert (await logged.log.verify(lambda _: True)).ok


async def test_entries_are_the_records_of_the_decisions_in_order_and_the_head_is_their_root(
    logged: Logged,
) -> None:
    made = await a_log(logged)
    exported = [e async for e in logged.log.export(EVERYTHING)]
    assert [e.seq for e in exported] == [1, 2, 3, 4, 5, 6]
    for entry, decision in zip(exported, made, strict=True):
        ref = entry.record["identity_ref"]
        assert ref is not None
        assert "ci-" not in ref  # a keyed digest, never the CI
        assert entry.record == records.record_of(decision, ref)
        assert records.decision_of(entry.record) == decision
        assert (await logged.log.find(decision.decision_id)) == entry
    head = await logged.log.head()
    leaves = [merkle.leaf_hash(records.canonical(e.record)) for e in exported]
    assert (head.size, head.root) == (6, merkle.root_of(leaves))
    assert await logged.log.find("dec_missing") is None


async def test_pages_run_newest_first_and_filters_combine(logged: Logged) -> None:
    await a_log(logged)
    log = logged.log

    async def seqs(
        where: DecisionFilter = EVERYTHING, before: int | None = None, limit: int = 10
    ) -> list[int]:
        return [e.seq for e in (await log.page(where, before=before, limit=limit)).decisions]

    assert await seqs() == [6, 5, 4, 3, 2, 1]
    first = await log.page(EVERYTHING, before=None, limit=4)
    assert ([e.seq for e in first.decisions], first.next_before) == ([6, 5, 4, 3], 3)
    last = await log.page(EVERYTHING, before=first.next_before, limit=4)
    assert ([e.seq for e in last.decisions], last.next_before) == ([2, 1], None)
    assert await seqs(DecisionFilter(verdict="deny")) == [6, 4, 2]
    assert await seqs(DecisionFilter(code="under_age")) == [4, 2]
    assert await seqs(DecisionFilter(policy="age_limit", outcome="deny", code="over_age")) == [6]
    assert await seqs(DecisionFilter(policy="dup", code="under_age")) == []  # one result must match all
    assert await seqs(DecisionFilter(provider="inicis_unified")) == [3]
    assert await seqs(DecisionFilter(subject="acct-5")) == [5]
    assert await seqs(DecisionFilter(imp_uid="imp_000000000002")) == [2]
    since, until = T0 + timedelta(hours=2), T0 + timedelta(hours=5)
    assert await seqs(DecisionFilter(since=since, until=until)) == [4, 3, 2]
    assert await seqs(DecisionFilter(verdict="allow", since=since, until=until)) == [3]
    # Both results of every decision allow in the first: each decision still comes once.
    assert await seqs(DecisionFilter(outcome="allow")) == [6, 5, 4, 3, 2, 1]
    both = await log.page(DecisionFilter(outcome="allow"), before=None, limit=4)
    assert ([e.seq for e in both.decisions], both.next_before) == ([6, 5, 4, 3], 3)
    # A result's filter and the decision's own columns, the time and the cursor all combine.
    assert await seqs(DecisionFilter(code="under_age", since=since, until=until)) == [4, 2]
    assert await seqs(DecisionFilter(code="under_age", provider="danal"), before=4) == [2]
    assert await seqs(DecisionFilter(outcome="allow", verdict="deny", until=until)) == [4, 2]

    # Two workers can append out of time order: a decision made at T0+3h, logged last, is in its hour.
    logged.clock.advance(timedelta(hours=-4))
    await decide(logged, 7)
    assert await seqs(DecisionFilter(since=since, until=until)) == [7, 4, 3, 2]
    assert await seqs(DecisionFilter(policy="dup", since=since, until=until), limit=2) == [7, 4]
    exported = [e.seq async for e in log.export(DecisionFilter(since=since, until=until))]
    assert exported == [2, 3, 4, 7]


async def test_a_persons_decisions_through_their_pseudonym(logged: Logged) -> None:
    await a_log(logged)
    assert [e.seq for e in await logged.log.of_person("ci-1", limit=10)] == [4, 1]
    assert [e.seq for e in await logged.log.of_person(" ci-1 ", limit=1)] == [4]
    assert await logged.log.of_person("nobody", limit=10) == []


async def test_stats_by_day_and_by_hour(logged: Logged) -> None:
    await a_log(logged)
    by_day = await logged.log.stats(EVERYTHING, Bucket.DAY)
    assert sum(n for _, v, n in by_day.verdicts if v == "deny") == 3
    assert {s.hour for s, _, _ in by_day.verdicts} == {0}
    assert {(p, c): n for _, p, c, n in by_day.deny_codes} == {
        ("age_limit", "under_age"): 2,
        ("age_limit", "over_age"): 1,
    }
    by_hour = await logged.log.stats(DecisionFilter(verdict="deny"), Bucket.HOUR)
    assert [(s, v, n) for s, v, n in by_hour.verdicts] == [
        (T0 + timedelta(hours=h), "deny", 1) for h in (2, 4, 6)
    ]


async def test_every_inclusion_and_consistency_proof_verifies(logged: Logged) -> None:
    for n in range(1, 10):
        await decide(logged, n)
    log = logged.log
    for size in range(1, 10):
        for seq in range(1, size + 1):
            proof = await log.inclusion_proof(seq, size)
            assert proof.verifies(), (seq, size)
        for old in range(1, size + 1):
            assert (await log.consistency_proof(old, size)).verifies(), (old, size)
    whole = await log.inclusion_proof(3, 9)
    assert whole.root == (await log.head()).root


async def test_checkpoints_newest_first_and_one_per_size(logged: Logged, tmp_path: Path) -> None:
    signer = SigningKeyFile(tmp_path / "log.pem")
    signer.create()
    key = signer.load("idgate.test/log")
    log = logged.log
    await decide(logged, 1)
    first = key.sign(1, (await log.head()).root, logged.clock.now())
    await log.save_checkpoint(first)
    await decide(logged, 2)
    second = key.sign(2, (await log.head()).root, logged.clock.now())
    await log.save_checkpoint(second)
    await log.save_checkpoint(
        key.sign(2, b"\0" * 32, logged.clock.now())
    )  # a second one for size 2: kept out
    assert [c.note for c in await log.checkpoints(limit=10)] == [second.note, first.note]
    assert (await log.checkpoint_at(1)) == first
    assert (await log.checkpoint_at(2)) == second
    assert await log.checkpoint_at(3) is None
    assert (await log.verify(lambda c: key.verifies(c.note))).ok
    forged = await log.verify(lambda c: c.size != 2)
    assert forged.finding is not None
    assert (forged.finding.kind, forged.finding.seq) == (Tampering.TREE, 2)


async def test_the_access_log_keeps_who_asked_what_newest_first(logged: Logged) -> None:
    await logged.log.record_access("auditor-kim", "list", {"verdict": "deny"})
    logged.clock.advance(timedelta(seconds=1))
    await logged.log.record_access("auditor-lee", "search", {})
    found = await logged.log.accesses(limit=10)
    assert [(a.actor, a.route, dict(a.query)) for a in found] == [
        ("auditor-lee", "search", {}),
        ("auditor-kim", "list", {"verdict": "deny"}),
    ]
    assert found[0].at == logged.clock.now()
    assert len(await logged.log.accesses(limit=1)) == 1
