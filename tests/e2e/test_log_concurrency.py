"""Several processes append to one log on PostgreSQL at once: the log that results has every decision
exactly once, at gapless positions, in one tree that verifies, with no fork between the processes."""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

from idgate.adapters.clock import SystemClock
from idgate.adapters.crypto import Keyring, KeyringSource
from idgate.adapters.store import DatabaseOptions, SqlDecisionLog, VerifiedKeyring, open_database
from idgate.domain import merkle, records
from idgate.domain.audit import DecisionFilter
from tests.conftest import only_postgresql
from tests.databases import TestDatabase

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4
EACH = 60


@only_postgresql
async def test_appends_from_several_processes_make_one_consistent_tree(
    database: TestDatabase, tmp_path: Path
) -> None:
    keyring = tmp_path / "keyring.json"
    KeyringSource(keyring).save(Keyring.generate(), create=True)
    appenders = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tests.log_appender", database.url, str(keyring), f"p{n}", str(EACH)),
            cwd=ROOT,
        )
        for n in range(PROCESSES)
    ]
    async with asyncio.timeout(240):
        codes = [await process.wait() for process in appenders]
    assert codes == [0] * PROCESSES

    total = PROCESSES * EACH
    assert database.rows("SELECT min(seq), max(seq), count(*) FROM decisions") == [(1, total, total)]
    clock = SystemClock()
    async with open_database(DatabaseOptions(url=database.url)) as db:
        log = SqlDecisionLog(db, VerifiedKeyring(KeyringSource(keyring).current, db.engine, clock), clock)
        entries = [e async for e in log.export(DecisionFilter())]
        head = await log.head()
        report = await log.verify(lambda _: True)
        proofs = [await log.consistency_proof(old, total) for old in (1, total // 3, total - 1)]
    assert report.ok, report.finding
    assert sorted(e.record["imp_uid"] for e in entries) == sorted(
        f"imp_p{p}{n:08d}" for p in range(PROCESSES) for n in range(EACH)
    )
    leaves = [merkle.leaf_hash(records.canonical(e.record)) for e in entries]
    assert (head.size, head.root) == (total, merkle.root_of(leaves))
    assert all(proof.verifies() for proof in proofs)
    # The processes' appends really interleaved: otherwise this test would not test the lock.
    writers = [e.record["imp_uid"][4:6] for e in entries]
    assert sum(a != b for a, b in itertools.pairwise(writers)) > PROCESSES
