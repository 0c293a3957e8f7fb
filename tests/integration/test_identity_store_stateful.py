"""A model-based test of the identity store: any sequence of binds, rotations, re-encryptions,
erasures and lookups leaves the store, on SQLite and on PostgreSQL, agreeing with a plain dictionary."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import tempfile
from collections.abc import Coroutine
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from idgate.adapters.crypto import Keyring, KeyringSource
from idgate.adapters.store import (
    DatabaseOptions,
    KeyMaintenance,
    SqlVerificationStore,
    VerifiedKeyring,
    open_database,
    schema,
)
from idgate.domain import (
    Certification,
    IdentityAlreadyBound,
    KeyInUse,
    Outcome,
    PolicyDecision,
    Principal,
    Role,
    Verdict,
    new_decision_id,
)
from tests.databases import Kind, create_postgres_database, drop_postgres_database, postgres_url
from tests.fakes import T0, FixedClock, a_certification, a_result

T = TypeVar("T")
NAMES = ["홍길동", "김민지", "O'Brien Jr.", "", "가" * 60]
SUBJECTS = [f"acct-{i}" for i in range(4)]
OPERATOR = Principal(name="model", role=Role.ADMIN)


def ci_of(n: int) -> str:
    return base64.b64encode(hashlib.sha512(f"person-{n}".encode()).digest()).decode()


# Persons 3 and 4 are one human with two phones: same CI.
PERSONS = [
    a_certification(
        name=NAMES[n], ci=ci_of(min(n, 3)), di=f"DI{n}", phone=f"010{n:08d}", birth_date=date(1980 + n, 2, 28)
    )
    for n in range(5)
]


class IdentityStoreMachine(RuleBasedStateMachine):
    kind: Kind = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.folder = tempfile.TemporaryDirectory()
        self.keys = KeyringSource(Path(self.folder.name) / "keyring.json")
        self.keys.save(Keyring.generate(), create=True)
        self.postgres = create_postgres_database() if self.kind == "postgresql" else None
        url = (
            postgres_url(self.postgres)
            if self.postgres
            else f"sqlite+aiosqlite:///{Path(self.folder.name) / 'model.db'}"
        )
        self.stack = contextlib.AsyncExitStack()
        database = self.run(
            self.stack.enter_async_context(open_database(DatabaseOptions(url=url), write_transactions=True))
        )
        self.run(schema.upgrade(database.engine))
        self.engine = database.engine
        clock = FixedClock()
        # The store and the operator's commands share one keyring source, as they share the file.
        self.store = SqlVerificationStore(
            database, VerifiedKeyring(self.keys.current, self.engine, clock), clock
        )
        self.jobs = KeyMaintenance(self.engine, self.keys, clock)
        self.bound: dict[str, Certification] = {}  # the model: subject → person
        self.serial = 0

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.stack.aclose())
        self.loop.close()
        self.folder.cleanup()
        if self.postgres:
            drop_postgres_database(self.postgres)

    @rule(subject=st.sampled_from(SUBJECTS), person=st.integers(0, 4))
    def bind(self, subject: str, person: int) -> None:
        self.serial += 1
        certification = replace(PERSONS[person], imp_uid=f"imp_{self.serial}")
        decision = PolicyDecision(
            decision_id=new_decision_id(T0),
            imp_uid=certification.imp_uid,
            subject=subject,
            verdict=Verdict.ALLOW,
            results=(a_result(Outcome.ALLOW),),
            decided_at=T0,
            policy_set="sha256:model",
            provider="danal",
        )
        taken = any(c.ci == certification.ci for s, c in self.bound.items() if s != subject)
        try:
            self.run(
                self.store.record_verification(
                    decision=decision, certification=certification, prepared_merchant_uid=None
                )
            )
        except IdentityAlreadyBound:
            assert taken
        else:
            assert not taken
            self.bound[subject] = certification

    @rule(index=st.booleans())
    def rotate(self, index: bool) -> None:
        self.run(self.jobs.rotate(index=index))

    @rule(batch=st.integers(1, 3))
    def reencrypt_one_batch(self, batch: int) -> None:
        self.run(self.jobs.reencrypt_batch(batch))

    @rule()
    def reencrypt_all_and_retire_old_keys(self) -> None:
        self.run(self.jobs.reencrypt_all(batch_size=3))
        assert self.run(self.jobs.pending()) == 0
        for index in (False, True):
            for key in list(self.keys.load().ring(index=index).keys.values()):
                if key.status == "active":
                    self.run(self.jobs.retire(key.id, index=index))

    @precondition(lambda self: bool(self.bound))
    @rule(index=st.booleans())
    def retiring_a_key_in_use_is_refused(self, index: bool) -> None:
        in_use = self.run(self.jobs.usage())
        ring = in_use.by_index_key if index else in_use.by_encryption_key
        for key in self.keys.load().ring(index=index).keys.values():
            if key.status == "active" and ring.get(key.id):
                with pytest.raises(KeyInUse):
                    self.run(self.jobs.retire(key.id, index=index))

    @invariant()
    def the_keyring_always_fits_the_database(self) -> None:
        assert not [f for f in self.run(self.jobs.status()) if f.problem]

    @precondition(lambda self: bool(self.bound))
    @rule(data=st.data())
    def erase(self, data: st.DataObject) -> None:
        subject = data.draw(st.sampled_from(sorted(self.bound)))
        assert self.run(self.store.erase_identity(subject, OPERATOR))
        del self.bound[subject]

    @rule(subject=st.sampled_from(SUBJECTS))
    def erase_unknown_is_false(self, subject: str) -> None:
        if subject not in self.bound:
            assert not self.run(self.store.erase_identity(subject, OPERATOR))

    @rule(person=st.integers(0, 4))
    def lookup(self, person: int) -> None:
        expected = sorted(s for s, c in self.bound.items() if c.ci == PERSONS[person].ci)
        assert self.run(self.store.subjects_with_ci(PERSONS[person].ci or "")) == expected
        expected_di = sorted(s for s, c in self.bound.items() if c.di == PERSONS[person].di)
        assert self.run(self.store.subjects_with_di(PERSONS[person].di or "")) == expected_di

    @invariant()
    def every_person_is_found_by_blind_index(self) -> None:
        for person in PERSONS[:4]:  # the fifth shares the fourth's CI
            expected = sorted(s for s, c in self.bound.items() if c.ci == person.ci)
            assert self.run(self.store.subjects_with_ci(person.ci or "")) == expected

    @invariant()
    def every_bound_identity_reads_back(self) -> None:
        for subject in SUBJECTS:
            identity = self.run(self.store.read_identity(subject, OPERATOR))
            person = self.bound.get(subject)
            if person is None:
                assert identity is None
            else:
                assert identity is not None
                assert (identity.name, identity.phone, identity.birth_date) == (
                    person.name,
                    person.phone,
                    person.birth_date,
                )


class PostgresIdentityStoreMachine(IdentityStoreMachine):
    kind: Kind = "postgresql"


MODEL_RUNS = settings(max_examples=25, stateful_step_count=20, deadline=None)
TestIdentityStoreOnSqlite = IdentityStoreMachine.TestCase
TestIdentityStoreOnSqlite.settings = MODEL_RUNS
TestIdentityStoreOnPostgres = PostgresIdentityStoreMachine.TestCase
TestIdentityStoreOnPostgres.settings = MODEL_RUNS
