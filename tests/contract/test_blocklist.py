"""The blocklist contract (BarredPeople and its management): the in-memory fake and the SQL blocklist on
SQLite and PostgreSQL answer alike. Then what only the database can show: no CI is stored, and the
list keeps working across an index-key rotation."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from idgate.adapters.crypto import BlindIndexer, Keyring, KeyringSource
from idgate.adapters.store import DatabaseOptions, VerifiedKeyring, open_database
from idgate.adapters.store.blocklist import SqlBlocklist
from idgate.domain.blocklist import Blocklist, BlocklistChange
from idgate.testing import InMemoryBlocklist
from tests.databases import TestDatabase
from tests.fakes import T0, FixedClock

CI_A = "CNwZM1xMxB6yGYCiqmwaks04A7prdT3rfkw17kaR0KqvAl5JVuiWeqxehqDYmAKPZL6Mxf70L25p+Ps8UAYInQ=="
CI_B = "Zm9yIHRoZSBibG9ja2xpc3QgY29udHJhY3QsIGEgc2Vjb25kIHBlcnNvbidzIENJIG9mIDg4IGNoYXJhY3RlcnM="
CI_C = "dGhpcmQgcGVyc29uOiBuZXZlciBiYXJyZWQgaW4gdGhlc2UgdGVzdHMsIGEgQ0kgb2YgODggY2hhcmFjdGVycw=="


@contextlib.asynccontextmanager
async def sql_blocklist(
    database: TestDatabase, keys: KeyringSource, clock: FixedClock
) -> AsyncIterator[SqlBlocklist]:
    async with open_database(DatabaseOptions(url=database.url, pool_size=4)) as db:
        yield SqlBlocklist(db, VerifiedKeyring(keys.current, db.engine, clock), clock)


def new_keyring(folder: Path) -> KeyringSource:
    keys = KeyringSource(folder / "keyring.json")
    keys.save(Keyring.generate(), create=True)
    return keys


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
async def blocklist(
    implementation: TestDatabase | None, tmp_path: Path, clock: FixedClock
) -> AsyncIterator[Blocklist]:
    if implementation is None:
        yield InMemoryBlocklist(clock=clock)
        return
    async with sql_blocklist(implementation, new_keyring(tmp_path), clock) as made:
        yield made


async def test_an_empty_blocklist_bars_no_one(blocklist: Blocklist) -> None:
    assert await blocklist.is_barred(CI_A) is False
    assert await blocklist.entries() == []


async def test_added_people_are_barred_and_listed_without_their_ci(
    blocklist: Blocklist, clock: FixedClock
) -> None:
    assert await blocklist.add([CI_A, CI_B], added_by="cli:ops") == BlocklistChange(changed=2, unchanged=0)
    assert await blocklist.is_barred(CI_A) is True
    assert await blocklist.is_barred(f"  {CI_B}\n") is True  # as a CI is normalised
    assert await blocklist.is_barred(CI_C) is False
    assert await blocklist.is_barred(CI_A.lower()) is False  # CIs are case-sensitive base64

    entries = await blocklist.entries()
    assert len(entries) == 2
    for entry in entries:
        assert (entry.added_at, entry.added_by, entry.matches) == (T0, "cli:ops", True)
        assert len(entry.index_keys) == 1
        assert len(entry.digest_prefix) == 12
        assert int(entry.digest_prefix, 16) >= 0  # hex digits
        assert entry.digest_prefix not in CI_A + CI_B
    assert len({entry.digest_prefix for entry in entries}) == 2


async def test_adding_someone_already_barred_changes_nothing(blocklist: Blocklist, clock: FixedClock) -> None:
    await blocklist.add([CI_A], added_by="cli:first")
    clock.advance(timedelta(hours=1))
    assert await blocklist.add([CI_A, CI_C], added_by="cli:second") == BlocklistChange(changed=1, unchanged=1)
    entries = await blocklist.entries()
    assert [(e.added_at, e.added_by) for e in entries] == [
        (T0, "cli:first"),
        (T0 + timedelta(hours=1), "cli:second"),
    ]  # oldest first; the first addition stands


async def test_removed_people_are_no_longer_barred(blocklist: Blocklist) -> None:
    await blocklist.add([CI_A, CI_B], added_by="cli:ops")
    assert await blocklist.remove([CI_A, CI_C]) == BlocklistChange(changed=1, unchanged=1)
    assert await blocklist.is_barred(CI_A) is False
    assert await blocklist.is_barred(CI_B) is True
    assert len(await blocklist.entries()) == 1
    assert await blocklist.remove([CI_A]) == BlocklistChange(changed=0, unchanged=1)
    assert await blocklist.remove([CI_B]) == BlocklistChange(changed=1, unchanged=0)
    assert await blocklist.entries() == []


# ---- what only the database can show -------------------------------------------------------------
async def test_the_database_holds_no_ci(database: TestDatabase, tmp_path: Path) -> None:
    keys = new_keyring(tmp_path)
    async with sql_blocklist(database, keys, FixedClock()) as blocklist:
        await blocklist.add([CI_A, CI_B], added_by="cli:ops")
        await blocklist.remove([CI_B])
    stored = database.stored_bytes()
    for ci in (CI_A, CI_B):
        assert not [where for where, data in stored.items() if ci.encode() in data]
    (digest,) = [row[0] for row in database.rows("SELECT digest FROM blocklist")]
    assert len(digest) == 64
    # A purpose of its own: not the identities' blind index of the CI, nor the log's identity_ref,
    # so the blocklist cannot be joined to anyone's account or decisions.
    indexer = BlindIndexer(keys.load)
    assert digest != indexer.digests("ci", CI_A)[1].hex()
    assert digest != indexer.pseudonym("identity-ref/ci", CI_A)


async def test_the_blocklist_keeps_working_across_an_index_key_rotation(
    database: TestDatabase, tmp_path: Path
) -> None:
    keys = new_keyring(tmp_path)
    clock = FixedClock()
    async with sql_blocklist(database, keys, clock) as blocklist:
        await blocklist.add([CI_A, CI_B], added_by="cli:ops")
        keys.save(keys.load().rotated(index=True))
        # Found under the old key while it is readable; a new person goes under both keys.
        assert await blocklist.is_barred(CI_A) is True
        await blocklist.add([CI_C], added_by="cli:ops")
        assert sorted(e.index_keys for e in await blocklist.entries()) == [(1,), (1,), (1, 2)]

        # Adding the list again fills in the new key's digests, and keeps each entry as it was.
        assert await blocklist.add([CI_A], added_by="cli:later") == BlocklistChange(changed=0, unchanged=1)
        entries = await blocklist.entries()
        assert sorted(e.index_keys for e in entries) == [(1,), (1, 2), (1, 2)]
        assert {e.added_by for e in entries} == {"cli:ops"}

        keys.save(keys.load().retired(1, index=True))
        assert await blocklist.is_barred(CI_A) is True  # under key 2
        assert await blocklist.is_barred(CI_B) is False  # only ever under key 1: no longer matches
        stale = [e for e in await blocklist.entries() if not e.matches]
        assert [e.index_keys for e in stale] == [(1,)]

        # Removal takes every row of the entry, the retired key's too.
        assert await blocklist.remove([CI_A]) == BlocklistChange(changed=1, unchanged=0)
    assert database.scalar("SELECT count(*) FROM blocklist") == 3  # CI_B's one row, CI_C's two
