"""A model-based test of the identity store: any sequence of binds, rotations, re-encryptions,
erasures and lookups leaves the SQLite store agreeing with a plain dictionary."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import tempfile
from collections.abc import Coroutine
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from idgate.adapters.crypto import BlindIndexer, FieldCipher, Keyring
from idgate.adapters.store import IdentityCodec, KeyMaintenance, SqlVerificationStore, create_engine
from idgate.domain import (
    Certification,
    IdentityAlreadyBound,
    Outcome,
    PolicyDecision,
    Principal,
    Role,
    Verdict,
    new_decision_id,
)
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
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.folder = tempfile.TemporaryDirectory()
        self.keys = Keyring.generate()
        codec = IdentityCodec(FieldCipher(lambda: self.keys), BlindIndexer(lambda: self.keys))
        self.engine = create_engine(
            f"sqlite+aiosqlite:///{Path(self.folder.name) / 'model.db'}", write_transactions=True
        )
        self.run(SqlVerificationStore.create_schema_on(self.engine))
        self.store = SqlVerificationStore(self.engine, codec, FixedClock())
        self.jobs = KeyMaintenance(self.engine, codec)
        self.bound: dict[str, Certification] = {}  # the model: subject → person
        self.serial = 0

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.engine.dispose())
        self.loop.close()
        self.folder.cleanup()

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
        self.keys = self.keys.rotated(index=index)

    @rule(batch=st.integers(1, 3))
    def reencrypt_one_batch(self, batch: int) -> None:
        self.run(self.jobs.reencrypt_batch(batch))

    @rule()
    def reencrypt_all_and_retire_old_keys(self) -> None:
        while self.run(self.jobs.reencrypt_batch(50))[1]:
            pass
        assert self.run(self.jobs.pending()) == 0
        for index in (False, True):
            for key in list(self.keys.ring(index=index).keys.values()):
                if key.status == "active":
                    self.run(self.jobs.check_retirable("index" if index else "encryption", key.id))
                    if index:
                        self.run(self.jobs.drop_index_entries(key.id))
                    self.keys = self.keys.retired(key.id, index=index)

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


TestIdentityStore = IdentityStoreMachine.TestCase
TestIdentityStore.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
