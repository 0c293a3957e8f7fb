"""The VerificationHistory contract: the in-memory fake and the SQL decision log on SQLite and PostgreSQL
count alike.

Decisions go in the one way production appends them, `VerificationStore.record_verification`, and
the counts are held to what was appended: by person (CI, or DI where the certificate had no CI),
by subject, and since a time (inclusive)."""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idgate.adapters.crypto import Keyring, KeyringSource
from idgate.adapters.store import (
    DatabaseOptions,
    SqlDecisionLog,
    SqlVerificationStore,
    VerifiedKeyring,
    open_database,
)
from idgate.domain import Channel, Outcome, PolicyDecision, Verdict, VerificationHistory, new_decision_id
from idgate.entrypoints.bootstrap import IdentityStore
from idgate.testing import InMemoryVerificationHistory as KitHistory
from tests.databases import TestDatabase
from tests.fakes import (
    T0,
    FixedClock,
    InMemoryVerificationHistory,
    InMemoryVerificationStore,
    a_certification,
    a_result,
)


@dataclass
class Counted:
    store: IdentityStore
    history: VerificationHistory
    clock: FixedClock
    made: int = 0

    async def decide(
        self, *, ci: str | None, di: str | None, subject: str | None = None, channel: Channel = Channel.HTTP
    ) -> datetime:
        """One decision (a denial: it binds no one) a minute after the one before; returns its time."""
        self.made += 1
        self.clock.advance(timedelta(minutes=1))
        decision = PolicyDecision(
            decision_id=new_decision_id(self.clock.now()),
            imp_uid=f"imp_{self.made:012d}",
            subject=subject,
            verdict=Verdict.DENY,
            results=(a_result(Outcome.DENY, policy="age_limit", code="under_age"),),
            decided_at=self.clock.now(),
            policy_set="sha256:ab",
            provider="danal",
            channel=channel,
        )
        certification = a_certification(imp_uid=decision.imp_uid, ci=ci, di=di)
        await self.store.record_verification(
            decision=decision, certification=certification, prepared_merchant_uid=None
        )
        return decision.decided_at


@pytest.fixture
async def counted(implementation: TestDatabase | None, tmp_path: Path) -> AsyncIterator[Counted]:
    clock = FixedClock()
    if implementation is None:
        store = InMemoryVerificationStore(clock=clock)
        yield Counted(store, InMemoryVerificationHistory(store), clock)
        return
    keys = KeyringSource(tmp_path / "keyring.json")
    keys.save(Keyring.generate(), create=True)
    async with open_database(DatabaseOptions(url=implementation.url, pool_size=4)) as db:
        keyring = VerifiedKeyring(keys.current, db.engine, clock)
        yield Counted(SqlVerificationStore(db, keyring, clock), SqlDecisionLog(db, keyring, clock), clock)


async def test_nothing_is_counted_in_an_empty_log(counted: Counted) -> None:
    h = counted.history
    assert await h.decisions_of_person(ci="CI-A", di="DI-A", since=T0 - timedelta(days=1)) == 0
    assert await h.decisions_of_subject("acct-1", since=T0 - timedelta(days=1)) == 0


async def test_a_persons_decisions_are_counted_by_ci_since_a_time_inclusive(counted: Counted) -> None:
    first = await counted.decide(ci="CI-A", di="DI-A")
    await counted.decide(ci="CI-B", di="DI-B")  # someone else
    second = await counted.decide(ci="CI-A", di="DI-A", subject="acct-1")
    await counted.decide(ci="CI-A", di="DI-A", subject="acct-2")
    h = counted.history
    assert await h.decisions_of_person(ci="CI-A", di=None, since=first) == 3
    assert await h.decisions_of_person(ci="CI-A", di=None, since=second) == 2  # from `since` on, itself too
    assert await h.decisions_of_person(ci="CI-A", di=None, since=second + timedelta(microseconds=1)) == 1
    assert await h.decisions_of_person(ci=" CI-A\n", di=None, since=first) == 3  # as the CI is normalised
    assert await h.decisions_of_person(ci="CI-B", di="DI-B", since=first) == 1
    assert await h.decisions_of_person(ci="CI-C", di="DI-C", since=first) == 0
    assert await h.decisions_of_person(ci=None, di=None, since=first) == 0


async def test_certifications_without_a_ci_are_counted_by_di_and_both_together(counted: Counted) -> None:
    start = await counted.decide(ci="CI-A", di="DI-A")  # logged by CI
    await counted.decide(ci=None, di="DI-A")  # a Kakao certificate: logged by DI
    await counted.decide(ci=None, di="DI-A")
    await counted.decide(ci=None, di="DI-B")
    h = counted.history
    assert await h.decisions_of_person(ci=None, di="DI-A", since=start) == 2
    assert await h.decisions_of_person(ci="CI-A", di=None, since=start) == 1
    # Each decision has one ref, so CI and DI together count each of the person's decisions once.
    assert await h.decisions_of_person(ci="CI-A", di="DI-A", since=start) == 3


async def test_the_closing_of_a_review_case_is_not_a_verification(counted: Counted) -> None:
    start = await counted.decide(ci="CI-A", di="DI-A", subject="acct-1")
    await counted.decide(ci="CI-A", di="DI-A", subject="acct-1", channel=Channel.REVIEW)
    assert await counted.history.decisions_of_person(ci="CI-A", di=None, since=start) == 1
    assert await counted.history.decisions_of_subject("acct-1", since=start) == 1


async def test_a_subjects_decisions_are_counted_whoever_was_verified(counted: Counted) -> None:
    composed = "계정-1"
    start = await counted.decide(ci="CI-A", di="DI-A", subject=composed)
    await counted.decide(ci="CI-B", di="DI-B", subject=composed)
    await counted.decide(ci=None, di=None, subject=composed)
    later = await counted.decide(ci="CI-A", di="DI-A", subject="acct-2")
    await counted.decide(ci="CI-A", di="DI-A")  # no subject
    h = counted.history
    assert await h.decisions_of_subject(composed, since=start) == 3
    # The log keeps text NFC-normalised; the same subject decomposed is the same subject.
    assert await h.decisions_of_subject(unicodedata.normalize("NFD", composed), since=start) == 3
    assert await h.decisions_of_subject(composed, since=later) == 0
    assert await h.decisions_of_subject("acct-2", since=start) == 1


@pytest.fixture
async def rotating(database: TestDatabase, tmp_path: Path) -> AsyncIterator[tuple[Counted, KeyringSource]]:
    clock = FixedClock()
    keys = KeyringSource(tmp_path / "keyring.json")
    keys.save(Keyring.generate(), create=True)
    async with open_database(DatabaseOptions(url=database.url, pool_size=4)) as db:
        keyring = VerifiedKeyring(keys.current, db.engine, clock)
        store, log = SqlVerificationStore(db, keyring, clock), SqlDecisionLog(db, keyring, clock)
        yield Counted(store, log, clock), keys


async def test_sql_counts_the_decisions_logged_under_every_readable_index_key(
    rotating: tuple[Counted, KeyringSource], database: TestDatabase
) -> None:
    counted, keys = rotating
    start = await counted.decide(ci="CI-A", di="DI-A")
    await counted.decide(ci=None, di="DI-A")
    keys.save(keys.load().rotated(index=True))
    await counted.decide(ci="CI-A", di="DI-A")
    await counted.decide(ci=None, di="DI-A")
    refs = [row[0] for row in database.rows("SELECT identity_ref FROM decisions ORDER BY seq")]
    assert [ref.split(":")[:2] for ref in refs] == [["ci", "1"], ["di", "1"], ["ci", "2"], ["di", "2"]]
    assert await counted.history.decisions_of_person(ci="CI-A", di=None, since=start) == 2
    assert await counted.history.decisions_of_person(ci="CI-A", di="DI-A", since=start) == 4


# idgate.testing's InMemoryVerificationHistory (for plugin authors) counts exactly as the fake above,
# which this suite holds to the SQL log: compared on any sequence of decisions and any question.
PEOPLE = st.sampled_from([("CI-A", "DI-A"), ("CI-B", "DI-B"), (None, "DI-A"), (None, "DI-C"), (None, None)])
SUBJECTS = st.sampled_from([None, "acct-1", "계정-1", unicodedata.normalize("NFD", "계정-1")])


@given(
    st.lists(st.tuples(PEOPLE, SUBJECTS, st.integers(0, 5)), max_size=12),
    st.lists(
        st.tuples(
            st.sampled_from(["CI-A", " CI-A", "CI-B", None]),
            st.sampled_from(["DI-A", "DI-C", None]),
            st.integers(0, 6),
        ),
        max_size=6,
    ),
    st.lists(st.tuples(SUBJECTS.filter(lambda s: s is not None), st.integers(0, 6)), max_size=4),
)
async def test_the_kits_history_counts_as_the_contracts_fake(
    made: list[tuple[tuple[str | None, str | None], str | None, int]],
    by_person: list[tuple[str | None, str | None, int]],
    by_subject: list[tuple[str, int]],
) -> None:
    store = InMemoryVerificationStore(clock=FixedClock())
    fake, kit = InMemoryVerificationHistory(store), KitHistory()
    for n, ((ci, di), subject, minutes) in enumerate(made):
        at = T0 + timedelta(minutes=minutes)
        decision = PolicyDecision(
            decision_id=new_decision_id(at),
            imp_uid=f"imp_{n:012d}",
            subject=subject,
            verdict=Verdict.DENY,
            results=(a_result(Outcome.DENY, policy="age_limit", code="under_age"),),
            decided_at=at,
            policy_set="sha256:ab",
            provider="danal",
        )
        certification = a_certification(imp_uid=decision.imp_uid, ci=ci, di=di)
        await store.record_verification(
            decision=decision, certification=certification, prepared_merchant_uid=None
        )
        kit.add(at=at, ci=ci, di=di, subject=subject)
    for ci, di, minutes in by_person:
        since = T0 + timedelta(minutes=minutes)
        assert await kit.decisions_of_person(ci=ci, di=di, since=since) == await fake.decisions_of_person(
            ci=ci, di=di, since=since
        )
    for subject, minutes in by_subject:
        since = T0 + timedelta(minutes=minutes)
        assert await kit.decisions_of_subject(subject, since=since) == await fake.decisions_of_subject(
            subject, since=since
        )
