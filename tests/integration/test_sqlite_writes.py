"""How the SQLite store writes: inline on the event loop when it can, never stalling the loop when it
cannot, and with the WAL folded into the database file as it goes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from idgate.adapters.store import SqlVerificationStore
from idgate.adapters.store.database import sqlite_pragmas
from idgate.adapters.store.runner import SqliteRunner, Transaction
from idgate.domain import PolicyDecision, Verdict
from idgate.domain.decisions import new_decision_id
from tests.conftest import Templates
from tests.databases import sqlite_database
from tests.fakes import a_certification
from tests.stores import sql_store

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def a_decision(n: int) -> PolicyDecision:
    return PolicyDecision(
        decision_id=new_decision_id(NOW),
        imp_uid=f"imp_{n}",
        subject=None,
        verdict=Verdict.DENY,
        results=(),
        decided_at=NOW,
        policy_set="sha256:x",
        provider="danal",
    )


@pytest.fixture
async def store(tmp_path: Path, templates: Templates) -> AsyncIterator[SqlVerificationStore]:
    async with sql_store(sqlite_database(tmp_path, templates.sqlite()), tmp_path) as store:
        yield store


async def record(store: SqlVerificationStore, n: int) -> None:
    await store.record_verification(
        decision=a_decision(n), certification=a_certification(imp_uid=f"imp_{n}"), prepared_merchant_uid=None
    )


async def test_a_write_waits_for_a_lock_held_elsewhere_while_the_loop_keeps_serving(
    store: SqlVerificationStore, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "idgate.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holding SQLite's write lock, e.g. a key rotation
    try:
        waiting = asyncio.create_task(record(store, 1))
        ticks = 0
        for _ in range(30):
            await asyncio.sleep(0.01)
            ticks += 1
        assert not waiting.done(), "the write did not wait for the lock"
        assert ticks == 30
        # A second write meanwhile queues behind the first rather than failing or overtaking it.
        queued = asyncio.create_task(record(store, 2))
        await asyncio.sleep(0.05)
        assert not queued.done()
    finally:
        other.execute("ROLLBACK")
        other.close()
    async with asyncio.timeout(10):
        await asyncio.gather(waiting, queued)
    assert await store.is_consumed("imp_1")
    assert await store.is_consumed("imp_2")
    # The lock is free again: the next write goes inline and is visible at once.
    await record(store, 3)
    assert await store.is_consumed("imp_3")


async def test_the_wal_is_copied_into_the_database_file_as_writes_go_on(
    store: SqlVerificationStore, tmp_path: Path
) -> None:
    database = tmp_path / "idgate.db"
    before = database.stat().st_size
    for n in range(450):  # more than two checkpoint intervals
        await record(store, n)
    await asyncio.sleep(0.2)  # the checkpoint runs on the writer thread
    assert database.stat().st_size > before, "the decisions never left the WAL"
    assert await store.is_consumed("imp_449")


def commits_in_wal(database: Path) -> int:
    """Transactions in the WAL file: frames whose header gives a database size are commit frames.

    The format is SQLite's (https://www.sqlite.org/fileformat.html#the_write_ahead_log): a 32-byte
    header with the page size at offset 8, then frames of a 24-byte header and one page.
    """
    wal = database.with_name(database.name + "-wal").read_bytes()
    if not wal:  # nothing written since the file was opened
        return 0
    (page_size,) = struct.unpack_from(">I", wal, 8)
    commits = 0
    for offset in range(32, len(wal) - 24, 24 + page_size):
        (size_after_commit,) = struct.unpack_from(">I", wal, offset + 4)
        commits += size_after_commit != 0
    return commits


async def test_concurrent_writes_share_commits_and_each_is_acknowledged_after_its_own(
    store: SqlVerificationStore, tmp_path: Path
) -> None:
    database = tmp_path / "idgate.db"
    await store.check_keyring()  # its first check records the keys: a commit of its own
    before = commits_in_wal(database)
    for n in range(5):  # one at a time: a commit each
        await record(store, n)
    assert commits_in_wal(database) - before == 5
    before = commits_in_wal(database)
    await asyncio.gather(*(record(store, n) for n in range(100, 160)))  # sixty at once
    shared = commits_in_wal(database) - before
    assert 1 <= shared <= 10, f"{shared} commits for 60 concurrent writes"
    reader = sqlite3.connect(database)  # what another connection sees: all sixty-five, committed
    assert reader.execute("SELECT count(*) FROM consumed_certifications").fetchone() == (65,)
    reader.close()


def open_sqlite_temp_files() -> list[str]:
    """Temporary files SQLite holds open in this process (it names them etilqs_… and unlinks them)."""
    names = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            names.append(os.readlink(fd))
    return [name for name in names if "etilqs_" in name]


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="reads open files from /proc")
async def test_a_write_journals_its_savepoint_in_memory_not_in_a_temporary_file(
    tmp_path: Path, templates: Templates
) -> None:
    sqlite_database(tmp_path, templates.sqlite())
    pragmas = sqlite_pragmas("full")
    runner = SqliteRunner(
        tmp_path / "idgate.db", prepare=lambda connection: pragmas(connection, None), check=lambda: None
    )

    async def insert(sql: Transaction) -> None:
        rows = [{"i": f"imp_{n}", "d": f"{n:040}", "at": NOW} for n in range(2000)]
        await sql.execute_many(
            "INSERT INTO consumed_certifications (imp_uid, decision_id, consumed_at) VALUES (:i, :d, :at)",
            rows,
        )

    async def change_and_look(sql: Transaction) -> list[str]:
        # SQLite journals each page that a savepoint changes and that existed before it, for ROLLBACK
        # TO; past 64 KiB that journal spills into a temporary file unless temp_store is MEMORY.
        await sql.execute(
            "UPDATE consumed_certifications SET decision_id = 'x' || substr(decision_id, 2)", {}
        )
        return open_sqlite_temp_files()

    try:
        await runner.write(insert)
        assert await runner.write(change_and_look) == []
    finally:
        await runner.aclose()
    check = sqlite3.connect(tmp_path / "idgate.db")
    assert check.execute(
        "SELECT count(*) FROM consumed_certifications WHERE decision_id LIKE 'x%'"
    ).fetchone() == (2000,)
    check.close()
