"""Rotation and re-encryption on a real database (SQLite and PostgreSQL), while verifications keep
arriving."""

from __future__ import annotations

import asyncio
from datetime import date

import httpx
import psycopg
import pytest

from idgate.domain import KeyInUse, KeyIsPrimary
from idgate.entrypoints.bootstrap import operations
from idgate.entrypoints.settings import Settings
from tests.conftest import Sandbox, only_postgresql, prepared_certification
from tests.databases import TestDatabase, libpq_url


async def bind(api: httpx.AsyncClient, sandbox: Sandbox, person: str, subject: str) -> str:
    answer = await api.post(
        "/certifications", json=await prepared_certification(api, sandbox, person, subject)
    )
    verdict: str = answer.json()["verdict"]
    return verdict


def key_ids(database: TestDatabase) -> set[tuple[int, int]]:
    return set(database.rows("select key_id, index_key_id from identities"))


async def test_rotation_reencryption_and_retirement(
    api: httpx.AsyncClient, sandbox: Sandbox, settings: Settings, database: TestDatabase
) -> None:
    people = ["adult", "leap-day", "foreigner", "mvno", "inicis-no-di"]
    for i, person in enumerate(people):
        assert await bind(api, sandbox, person, f"acct-{i}") == "allow"
    async with operations(settings) as ops:
        assert await ops.keys.rotate() == 2
        assert await ops.keys.rotate(index=True) == 2
        await asyncio.sleep(1.1)  # the running server notices the new keyring within a second
        # New writes use the new keys at once; old rows still read and still block duplicates.
        assert await bind(api, sandbox, "no-phone", "acct-new") == "allow"
        assert await bind(api, sandbox, "adult", "acct-dup") == "deny"
        assert (await ops.keys.usage()).by_encryption_key == {1: 5, 2: 1}
        with pytest.raises(KeyInUse, match="still covers 5 identities"):
            await ops.keys.retire(1)
        with pytest.raises(KeyIsPrimary):
            await ops.keys.retire(2)

        # A batch at a time, abandoning the run halfway, as a killed job would.
        done, _ = await ops.keys.reencrypt_batch(2)
        assert (done, await ops.keys.pending()) == (2, 3)
    async with operations(settings) as ops:  # a fresh process picks up where the last stopped
        seen: list[tuple[int, int]] = []
        assert await ops.keys.reencrypt_all(batch_size=2, progress=lambda *p: seen.append(p)) == 3
        assert seen == [(2, 3), (3, 3)]
        assert await ops.keys.pending() == 0
        assert key_ids(database) == {(2, 2)}
        assert await ops.keys.reencrypt_all() == 0  # a second run does nothing
        await ops.keys.retire(1)
        await ops.keys.retire(1, index=True)
        usage = await ops.keys.usage()
        assert usage.index_rows.keys() == {2}  # the retired index key's entries are gone
        assert {(f.ring, f.key_id, f.status, f.verdict) for f in await ops.keys.status()} == {
            ("encryption", 1, "retired", "ok"),
            ("encryption", 2, "primary", "ok"),
            ("index", 1, "retired", "ok"),
            ("index", 2, "primary", "ok"),
        }
    await asyncio.sleep(1.1)
    # Everything still reads and duplicates are still caught, with only the new keys left.
    assert await bind(api, sandbox, "dual-phone-a", "acct-d1") == "allow"
    assert await bind(api, sandbox, "dual-phone-b", "acct-d2") == "deny"
    assert await bind(api, sandbox, "leap-day", "acct-dup2") == "deny"


async def test_reencryption_is_safe_while_verifications_arrive(
    api: httpx.AsyncClient, sandbox: Sandbox, settings: Settings, database: TestDatabase
) -> None:
    persons = [p for p in sandbox.state.persons if p not in {"minor", "dual-phone-b"}]
    for i, person in enumerate(persons):
        await bind(api, sandbox, person, f"acct-{i}")
    async with operations(settings) as ops:
        await ops.keys.rotate()
        await asyncio.sleep(1.1)

        async def reencrypt() -> None:
            await ops.keys.reencrypt_all(batch_size=1)

        # Re-verifications rebind the same subjects (new rows) while the job rewrites the old ones.
        rebinds = [bind(api, sandbox, person, f"acct-{i}") for i, person in enumerate(persons)]
        results = await asyncio.gather(reencrypt(), *rebinds)
        assert set(results[1:]) == {"allow"}
        await reencrypt()
        assert await ops.keys.pending() == 0
    assert key_ids(database) == {(2, 1)}
    assert database.scalar("select count(*) from identities") == len(persons)


@only_postgresql
async def test_reencryption_leaves_a_row_being_rebound_for_later_instead_of_waiting_for_it(
    api: httpx.AsyncClient, sandbox: Sandbox, settings: Settings, database: TestDatabase
) -> None:
    for i in range(5):
        assert (
            await bind(api, sandbox, sandbox.state.mint_person(date(1990, 1, 1)).id, f"acct-{i}") == "allow"
        )
    async with operations(settings) as ops:
        await ops.keys.rotate()
        # A verification rebinding acct-0 holds its row until it commits (its DELETE locks it).
        with psycopg.connect(libpq_url(database.url)) as verification:
            verification.execute("SELECT id FROM identities WHERE subject = 'acct-0' FOR UPDATE")
            rewritten = await asyncio.wait_for(ops.keys.reencrypt_all(batch_size=2), 5)
            assert rewritten == 4
            assert await ops.keys.pending() == 1
            verification.rollback()
        assert await ops.keys.reencrypt_all() == 1
        assert await ops.keys.pending() == 0
    assert key_ids(database) == {(2, 1)}
