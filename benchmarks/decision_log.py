"""Benchmark of the decision log on a log of a million realistic decisions: the cost of appending,
the append ceiling at PostgreSQL's head-row lock, `verify`, inclusion proofs and filtered queries.

    .venv/bin/python -m benchmarks.decision_log                      # 1,000,000 records, both databases
    .venv/bin/python -m benchmarks.decision_log --records 100000 --database sqlite

The log is built once per size and kept: a SQLite file under .idgate/bench/ and a PostgreSQL
template database `idgate_bench_log_<records>`; each run works on a copy of it (`--rebuild` builds
it again, `--drop-cache` removes both). It is built in bulk, but from the real code: every record is
`LogEntry.of(decision, identity_ref)`, its columns and result rows are the ones `append` stores, and
the tree's nodes and head come from `merkle.Frontier` exactly as `append` makes them (a check at the
start compares a small bulk-built log with one made by `append` itself, row for row). Checkpoints are
signed every 1,000 entries, as the server's housekeeping does.

Figures are printed, never asserted: the machines here are shared, so compare the ratios printed in
one run (the floor next to verify, a query next to the raw read), and CPU time where it is given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import shutil
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import sqlalchemy as sa

from idgate.adapters.clock import SystemClock
from idgate.adapters.crypto import Keyring, KeyringSource, SigningKeyFile
from idgate.adapters.store import decision_log as store_log
from idgate.adapters.store import schema
from idgate.adapters.store import sql as sql_module
from idgate.adapters.store.database import Database, DatabaseOptions, open_database
from idgate.adapters.store.decision_log import LogEntry, SqlDecisionLog, append
from idgate.adapters.store.keyring_check import VerifiedKeyring
from idgate.adapters.store.migrations.versions.v0004_decision_log import RECORD_VERIFICATION
from idgate.adapters.store.postgres import PostgresTransaction
from idgate.adapters.store.runner import SqliteTransaction, _record, _run_inline, _sqlite_params
from idgate.adapters.store.sql import _INSERT_CONSUMED, _VerificationRows
from idgate.adapters.store.tokens import SqlAccessTokens
from idgate.domain import (
    Channel,
    Outcome,
    PolicyDecision,
    PolicyResult,
    Role,
    combine,
    merkle,
    policy_set_digest,
)
from idgate.domain.audit import Checkpoint
from idgate.domain.records import parse as records_parse

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".idgate" / "bench"  # .idgate/ is ignored by git (make demo keeps its data there too)
BIN = Path(sys.executable).parent
POSTGRES_URL = os.environ.get("IDGATE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
LOG_NAME = "idgate-bench/decisions"
START = datetime(2026, 10, 5, tzinfo=UTC)
SPAN = timedelta(days=42)  # six weeks of decisions, whatever their number
CHECKPOINT_EVERY = 1000  # as [audit] checkpoint_every
SEED = 2026


# ---- the decisions ------------------------------------------------------------------------------
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PROVIDERS = ("danal", "inicis_unified", "kcp", "kakao", "toss", "naver", "pass")
PROVIDER_WEIGHTS = (45, 20, 12, 10, 7, 4, 2)
AGE = ("age_limit", "1.0.0")
DUPLICATE = ("duplicate_identity", "1.0.0")
DEVICE = ("device_risk", "0.3.0")  # a third-party policy run in shadow mode from week 3
VELOCITY = ("velocity", "1.1.0")  # an enforced one from week 5


def described(policy: tuple[str, str], options: dict[str, object], enforce: bool) -> dict[str, object]:
    """A policy as the engine describes it for the policy-set digest."""
    name, version = policy
    return {
        "name": name,
        "version": version,
        "distribution": "idgate",
        "options": options,
        "enforce": enforce,
        "timeout_seconds": 2.0,
        "on_error": "deny",
    }


POLICY_SETS = (
    policy_set_digest([described(AGE, {"min_age": 19}, True), described(DUPLICATE, {}, True)]),
    policy_set_digest(
        [described(AGE, {"min_age": 19}, True), described(DUPLICATE, {}, True), described(DEVICE, {}, False)]
    ),
    policy_set_digest(
        [
            described(AGE, {"min_age": 19}, True),
            described(DUPLICATE, {}, True),
            described(DEVICE, {}, False),
            described(VELOCITY, {}, True),
        ]
    ),
)


def decision_id(at: datetime, rng: random.Random) -> str:
    """As domain.new_decision_id (milliseconds, then 80 random bits), from a seeded generator."""
    value = (int(at.timestamp() * 1000) << 80) | rng.getrandbits(80)
    return "dec_" + "".join(_CROCKFORD[(value >> (5 * (25 - i))) & 31] for i in range(26))


@dataclass(frozen=True, slots=True)
class Person:
    subject: str | None
    identity_ref: str | None


def people(count: int) -> list[Person]:
    """A population: most have an account (subject) and a CI; some come through a provider without CI."""
    rng = random.Random(SEED)  # noqa: S311 - made-up data, not secrets
    found = []
    for n in range(count):
        digest = hashlib.sha256(f"person-{n}".encode()).hexdigest()
        kind = rng.random()
        ref = f"ci:1:{digest}" if kind < 0.95 else f"di:1:{digest}" if kind < 0.99 else None
        found.append(Person(f"user-{n:07d}" if rng.random() < 0.9 else None, ref))
    return found


def decisions(count: int, first: int = 0) -> Iterator[tuple[PolicyDecision, str | None]]:
    """`count` decisions in time order over six weeks, with the variety a real log has; with `first`,
    the ones made after a log of `first` entries (a millisecond apart, after the six weeks)."""
    rng = random.Random(SEED + 1 + first)  # noqa: S311 - made-up data, not secrets
    population = people(max(1, (first or count) * 3 // 10))
    step = SPAN / max(count, 1)
    for n in range(count):
        at = START + step * n if not first else START + SPAN + timedelta(milliseconds=n)
        era = min(2, n * 3 // max(count, 1)) if not first else 2
        # Most people verify once or twice in six weeks; one in 200 (test accounts, people who keep
        # failing) makes a fifth of all decisions, about 130 each.
        regulars = max(1, len(population) // 200)
        person = population[rng.randrange(regulars) if rng.random() < 0.2 else rng.randrange(len(population))]
        results = [
            PolicyResult(
                policy=AGE[0],
                version=AGE[1],
                outcome=Outcome.ALLOW,
                code="age_ok",
                message="만 나이 19 or older",
                duration_us=rng.randrange(3, 40),
            )
            if rng.random() < 0.88
            else PolicyResult(
                policy=AGE[0],
                version=AGE[1],
                outcome=Outcome.DENY,
                code="under_age",
                message="must be at least 19 (만 나이, international age)",
                duration_us=rng.randrange(3, 40),
            )
        ]
        ref = person.identity_ref
        if ref is None or ref.startswith("di:"):
            results.append(
                PolicyResult(
                    policy=DUPLICATE[0],
                    version=DUPLICATE[1],
                    outcome=Outcome.ABSTAIN,
                    code="no_ci",
                    message="no CI or DI to recognise the person by",
                    duration_us=rng.randrange(5, 60),
                )
            )
        elif rng.random() < 0.97:
            results.append(
                PolicyResult(
                    policy=DUPLICATE[0],
                    version=DUPLICATE[1],
                    outcome=Outcome.ALLOW,
                    code="identity_unique",
                    message="no other account for this person (CI)",
                    duration_us=rng.randrange(60, 900),
                )
            )
        else:
            results.append(
                PolicyResult(
                    policy=DUPLICATE[0],
                    version=DUPLICATE[1],
                    outcome=Outcome.DENY,
                    code="identity_bound_elsewhere",
                    message="this person (CI) already has another account",
                    duration_us=rng.randrange(60, 900),
                )
            )
        if era >= 1:
            roll = rng.random()
            outcome, code = (
                (Outcome.ALLOW, "low_risk")
                if roll < 0.9
                else (Outcome.REVIEW, "new_device")
                if roll < 0.999
                else (Outcome.ERROR, "policy_error")
            )
            results.append(
                PolicyResult(
                    policy=DEVICE[0],
                    version=DEVICE[1],
                    outcome=outcome,
                    code=code,
                    message="the policy failed" if outcome is Outcome.ERROR else f"device: {code}",
                    enforced=False,
                    duration_us=rng.randrange(100, 3000),
                )
            )
        if era >= 2:
            review = rng.random() < 0.04
            results.append(
                PolicyResult(
                    policy=VELOCITY[0],
                    version=VELOCITY[1],
                    outcome=Outcome.REVIEW if review else Outcome.ALLOW,
                    code="too_many_attempts" if review else "within_limit",
                    message="5 or more verifications in an hour" if review else "",
                    duration_us=rng.randrange(20, 200),
                )
            )
        channel = rng.choices((Channel.HTTP, Channel.REDIRECT, Channel.CLI), (85, 12, 3))[0]
        yield (
            PolicyDecision(
                decision_id=decision_id(at, rng),
                imp_uid=f"imp_{100_000_000_000 + first + n}",
                subject=person.subject,
                verdict=combine(results),
                results=tuple(results),
                decided_at=at,
                policy_set=POLICY_SETS[era],
                provider=rng.choices(PROVIDERS, PROVIDER_WEIGHTS)[0],
                channel=channel,
                caller=rng.choice(("ops-kim", "ops-lee")) if channel is Channel.CLI else None,
            ),
            ref,
        )


@dataclass
class Batch:
    """The rows `append` would store for a run of entries, in the tables' column order."""

    decisions: list[dict[str, object]] = field(default_factory=list)
    results: list[dict[str, object]] = field(default_factory=list)
    nodes: list[tuple[int, int, bytes]] = field(default_factory=list)
    checkpoints: list[tuple[int, bytes]] = field(default_factory=list)  # (size, root) to sign


def log_batches(count: int, batch: int = 20_000) -> Iterator[tuple[Batch, merkle.Frontier]]:
    """The log in batches: what `append` stores for each entry, from the same code."""
    frontier = merkle.Frontier()
    current = Batch()
    for decision, ref in decisions(count):
        entry = LogEntry.of(decision, ref)
        leaf = merkle.leaf_hash(entry.record)
        made = frontier.append(leaf)
        seq = frontier.size
        current.decisions.append({**entry.columns(), "seq": seq})
        current.results += entry.results(seq)
        current.nodes += [(0, seq - 1, leaf), *made]
        if seq % CHECKPOINT_EVERY == 0 or seq == count:
            current.checkpoints.append((seq, frontier.root()))
        if len(current.decisions) == batch:
            yield current, frontier
            current = Batch()
    if current.decisions or count == 0:
        yield current, frontier


DECISION_COLUMNS = (
    "seq", "decision_id", "imp_uid", "subject", "provider", "verdict", "policy_set", "decided_at",
    "identity_ref", "channel", "caller", "record",
)  # fmt: skip
RESULT_COLUMNS = ("seq", "position", "policy", "version", "outcome", "code", "enforced")


# ---- the cache: a SQLite file and a PostgreSQL template, built once per size ---------------------
@dataclass(frozen=True)
class Keys:
    """The keyring and checkpoint key every bench database is made with (kept beside the cache)."""

    keyring: Path
    signing_key: Path

    @classmethod
    def ensure(cls) -> Keys:
        CACHE.mkdir(parents=True, exist_ok=True)
        keys = cls(CACHE / "keyring.json", CACHE / "log-signing-key.pem")
        if not keys.keyring.exists():
            KeyringSource(keys.keyring).save(Keyring.generate(), create=True)
        if not keys.signing_key.exists():
            SigningKeyFile(keys.signing_key).create()
        return keys

    def signed(self, size: int, root: bytes, at: datetime) -> Checkpoint:
        return SigningKeyFile(self.signing_key).load(LOG_NAME).sign(size, root, at)

    def checker(self) -> Callable[[Checkpoint], bool]:
        signer = SigningKeyFile(self.signing_key).load(LOG_NAME)
        return lambda checkpoint: signer.verifies(checkpoint.note)


def _migrate(url: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as connection:
        schema.upgrade_connection(connection)
    engine.dispose()


def _signed_rows(keys: Keys, batch: Batch) -> list[dict[str, object]]:
    signer = SigningKeyFile(keys.signing_key).load(LOG_NAME)
    step = SPAN / max(batch.checkpoints[-1][0], 1) if batch.checkpoints else SPAN
    rows = []
    for size, root in batch.checkpoints:
        c = signer.sign(size, root, START + step * size + timedelta(seconds=1))
        rows.append({"size": c.size, "root": c.root, "signed_at": c.signed_at, "note": c.note})
    return rows


def insert_sql(table: str, columns: Sequence[str]) -> str:
    names, values = ", ".join(columns), ", ".join(":" + c for c in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({values})"  # noqa: S608 - this module's names


def build_sqlite(path: Path, count: int, keys: Keys) -> float:
    """The log of `count` entries in a new SQLite file at the newest schema; returns seconds taken."""
    started = time.perf_counter()
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    _migrate(f"sqlite:///{partial}")
    db = sqlite3.connect(partial, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1000000")
    # The secondary indexes go, and come back after the rows: the same definitions, made in one go.
    indexes = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        "AND tbl_name IN ('decisions', 'decision_results', 'log_nodes')"
    ).fetchall()
    for name, _ in indexes:
        db.execute(f'DROP INDEX "{name}"')
    insert_decision = insert_sql("decisions", DECISION_COLUMNS)
    insert_result = insert_sql("decision_results", RESULT_COLUMNS)
    frontier = merkle.Frontier()
    db.execute("BEGIN")
    for batch, frontier in log_batches(count):
        db.executemany(insert_decision, [_sqlite_params(row) for row in batch.decisions])
        db.executemany(insert_result, batch.results)
        db.executemany("INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)", batch.nodes)
        db.executemany(
            "INSERT INTO log_checkpoints (size, root, signed_at, note) "
            "VALUES (:size, :root, :signed_at, :note)",
            [_sqlite_params(row) for row in _signed_rows(keys, batch)],
        )
        _progress("SQLite", frontier.size, count, started)
    db.execute(
        "INSERT INTO log_head (id, size, frontier) VALUES (1, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET size = excluded.size, frontier = excluded.frontier",
        (frontier.size, frontier.to_bytes()),
    )
    db.execute("COMMIT")
    for _, sql in indexes:
        db.execute(sql)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    partial.rename(path)
    print(file=sys.stderr)
    return time.perf_counter() - started


def _progress(what: str, done: int, total: int, started: float) -> None:
    rate = done / max(time.perf_counter() - started, 1e-9)
    print(f"\r  building the {what} log: {done:,} of {total:,} ({rate:,.0f}/s)", end="", file=sys.stderr)


def libpq(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def pg_url(name: str, driver: str = "postgresql+asyncpg") -> str:
    return sa.make_url(POSTGRES_URL).set(drivername=driver, database=name).render_as_string(False)


async def admin() -> asyncpg.Connection[Any]:
    return await asyncpg.connect(libpq(POSTGRES_URL))


async def pg_exists(name: str) -> bool:
    connection = await admin()
    try:
        return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await connection.close()


async def pg_execute(sql: str) -> None:
    connection = await admin()
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def pg_execute_on(name: str, sql: str) -> None:
    connection = await asyncpg.connect(libpq(pg_url(name)))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def build_postgres(name: str, count: int, keys: Keys) -> float:
    """The log in a new PostgreSQL database `name`, marked as a template; returns seconds taken."""
    started = time.perf_counter()
    partial = name + "_partial"
    await pg_execute(f'DROP DATABASE IF EXISTS "{partial}" WITH (FORCE)')
    await pg_execute(f'CREATE DATABASE "{partial}"')
    await asyncio.to_thread(_migrate, pg_url(partial, "postgresql+psycopg"))
    db = await asyncpg.connect(libpq(pg_url(partial)))
    try:
        # Plain indexes go and come back after the rows (constraints and primary keys stay).
        indexes = await db.fetch(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public' "
            "AND i.tablename IN ('decisions', 'decision_results', 'log_nodes') "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        )
        for row in indexes:
            await db.execute(f'DROP INDEX "{row["indexname"]}"')
        frontier = merkle.Frontier()
        for batch, frontier in log_batches(count):
            async with db.transaction():
                await db.copy_records_to_table(
                    "decisions",
                    records=[tuple(row[c] for c in DECISION_COLUMNS) for row in batch.decisions],
                    columns=DECISION_COLUMNS,
                )
                await db.copy_records_to_table(
                    "decision_results",
                    records=[tuple(row[c] for c in RESULT_COLUMNS) for row in batch.results],
                    columns=RESULT_COLUMNS,
                )
                await db.copy_records_to_table(
                    "log_nodes", records=batch.nodes, columns=("level", "idx", "hash")
                )
                signed = _signed_rows(keys, batch)
                await db.copy_records_to_table(
                    "log_checkpoints",
                    records=[(r["size"], r["root"], r["signed_at"], r["note"]) for r in signed],
                    columns=("size", "root", "signed_at", "note"),
                )
            _progress("PostgreSQL", frontier.size, count, started)
        await db.execute(
            "UPDATE log_head SET size = $1, frontier = $2 WHERE id = 1", frontier.size, frontier.to_bytes()
        )
        for row in indexes:
            await db.execute(row["indexdef"])
        # PostgreSQL's autovacuum analyses a table this size by itself soon after; do it now.
        await db.execute("VACUUM ANALYZE")
    finally:
        await db.close()
    await pg_execute(f'ALTER DATABASE "{partial}" RENAME TO "{name}"')
    await pg_execute(f'ALTER DATABASE "{name}" IS_TEMPLATE true')
    print(file=sys.stderr)
    return time.perf_counter() - started


def check_builder(keys: Keys, count: int = 300) -> None:
    """The bulk builder against `append` itself: the same rows in every table, or the run stops."""
    folder = CACHE / "builder-check"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    bulk = folder / "bulk.db"
    build_sqlite(bulk, count, keys)
    appended = folder / "append.db"
    _migrate(f"sqlite:///{appended}")
    db = sqlite3.connect(appended, isolation_level=None)
    db.row_factory = _record
    db.execute("BEGIN")
    for decision, ref in decisions(count):
        _run_inline(append(SqliteTransaction(db), LogEntry.of(decision, ref)))
    db.execute("COMMIT")
    db.close()
    for table, order in (
        ("decisions", "seq"),
        ("decision_results", "seq, position"),
        ("log_nodes", "level, idx"),
        ("log_head", "id"),
    ):
        rows = [_rows(path, f"SELECT * FROM {table} ORDER BY {order}") for path in (bulk, appended)]  # noqa: S608
        if rows[0] != rows[1]:
            raise SystemExit(f"the bulk builder's {table} differ from what append stores")
    shutil.rmtree(folder)


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


# ---- measuring ----------------------------------------------------------------------------------
TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """utime + stime of a process and all its threads, in seconds (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_cpu() -> float:
    """CPU of every PostgreSQL server process on this machine (its backends come and go)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    total += process_cpu(int(entry.name))
    return total


@dataclass
class Timer:
    """Wall time, this process's CPU (every thread) and PostgreSQL's, over a block."""

    wall: float = 0.0
    cpu: float = 0.0
    db_cpu: float = 0.0

    @contextlib.contextmanager
    def timing(self) -> Iterator[Timer]:
        wall, cpu, db = time.perf_counter(), process_cpu(os.getpid()), postgres_cpu()
        try:
            yield self
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += process_cpu(os.getpid()) - cpu
            self.db_cpu += postgres_cpu() - db


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class Row:
    what: str
    figure: str
    note: str = ""


@dataclass
class Report:
    database: str
    rows: list[Row] = field(default_factory=list)

    def add(self, what: str, figure: str, note: str = "") -> None:
        self.rows.append(Row(what, figure, note))
        print(f"  {what:48s} {figure:>24s}  {note}", flush=True)


# ---- a run's own copy of the cached log ---------------------------------------------------------
@dataclass
class Target:
    database: str  # "sqlite" or "postgresql"
    url: str  # for [database] url
    name: str  # the file or the database

    def sync_url(self) -> str:
        if self.database == "sqlite":
            return f"sqlite:///{self.name}"
        return pg_url(self.name, "postgresql+psycopg")


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def run_copy(database: str, count: int, keys: Keys, *, rebuild: bool) -> AsyncIterator[Target]:
    """A copy of the cached log of `count` entries (built first when missing) at the newest schema
    (a cache built before a revision is upgraded in the copy), removed afterwards."""
    if database == "sqlite":
        cached = CACHE / f"decision-log-{count}.db"
        if rebuild:
            cached.unlink(missing_ok=True)
        if not cached.exists():
            print(f"  building the SQLite log of {count:,} (kept in {cached}) …", flush=True)
            print(f"  built in {build_sqlite(cached, count, keys):.0f} s", flush=True)
        copy = CACHE / "run.db"
        remove_sqlite(copy)
        await asyncio.to_thread(shutil.copyfile, cached, copy)
        target = Target("sqlite", f"sqlite+aiosqlite:///{copy}", str(copy))
        try:
            await asyncio.to_thread(_migrate, target.sync_url())
            yield target
        finally:
            remove_sqlite(copy)
        return
    template = f"idgate_bench_log_{count}"
    if rebuild and await pg_exists(template):
        await pg_execute(f'ALTER DATABASE "{template}" IS_TEMPLATE false')
        await pg_execute(f'DROP DATABASE "{template}" WITH (FORCE)')
    if not await pg_exists(template):
        print(f"  building the PostgreSQL log of {count:,} (kept as template {template}) …", flush=True)
        print(f"  built in {await build_postgres(template, count, keys):.0f} s", flush=True)
    name = "idgate_bench_log_run"
    await pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    target = Target("postgresql", pg_url(name), name)
    try:
        await asyncio.to_thread(_migrate, target.sync_url())
        await pg_execute_on(name, "ANALYZE")
        yield target
    finally:
        await pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def drop_cache() -> None:
    for path in CACHE.glob("decision-log-*.db*"):
        path.unlink()
    connection = await admin()
    try:
        names = await connection.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'idgate_bench_log%'"
        )
    finally:
        await connection.close()
    for row in names:
        await pg_execute(f'ALTER DATABASE "{row[0]}" IS_TEMPLATE false')
        await pg_execute(f'DROP DATABASE "{row[0]}" WITH (FORCE)')
    print(f"removed the cached logs ({len(names)} PostgreSQL databases and the SQLite files in {CACHE})")


@contextlib.asynccontextmanager
async def opened(target: Target, keys: Keys) -> AsyncIterator[tuple[Database, SqlDecisionLog]]:
    clock = SystemClock()
    async with open_database(DatabaseOptions(url=target.url, pool_size=16)) as db:
        keyring = VerifiedKeyring(KeyringSource(keys.keyring).current, db.engine, clock)
        yield db, SqlDecisionLog(db, keyring, clock)


async def raw_records(target: Target, first: int, last: int) -> list[bytes]:
    """Records of seqs [first, last], straight from the driver."""
    if target.database == "sqlite":
        with contextlib.closing(sqlite3.connect(target.name)) as db:
            return [
                r
                for (r,) in db.execute(
                    "SELECT record FROM decisions WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last)
                )
            ]
    connection = await asyncpg.connect(libpq(target.url))
    try:
        return [
            r[0]
            for r in await connection.fetch(
                "SELECT record FROM decisions WHERE seq BETWEEN $1 AND $2 ORDER BY seq", first, last
            )
        ]
    finally:
        await connection.close()


# ---- verify, next to SHA-256 alone --------------------------------------------------------------
async def measure_floor(target: Target, size: int, report: Report, chunk: int = 100_000) -> float:
    """SHA-256 (hashlib) of the same canonical records in a tight loop, chunk by chunk (only the
    hashing is timed); and reading them through the driver, for comparison. Returns records/s."""
    hashing = reading = 0.0
    sha256 = hashlib.sha256
    for first in range(1, size + 1, chunk):
        started = time.perf_counter()
        records = await raw_records(target, first, min(size, first + chunk - 1))
        reading += time.perf_counter() - started
        started = time.perf_counter()
        for record in records:
            sha256(record).digest()
        hashing += time.perf_counter() - started
    report.add(
        "floor: SHA-256 of each record (hashlib)", f"{size / hashing:,.0f} records/s", f"{hashing:.2f} s"
    )
    report.add(
        "read every record (driver, no hashing)", f"{size / reading:,.0f} records/s", f"{reading:.2f} s"
    )
    return size / hashing


async def measure_verify(log: SqlDecisionLog, keys: Keys, report: Report, floor: float, label: str) -> None:
    signed = keys.checker()
    for copies in (True, False):
        store_log._RowsCheck.CHECK_COPIES = copies
        timer = Timer()
        try:
            with timer.timing():
                found = await log.verify(signed)
        finally:
            store_log._RowsCheck.CHECK_COPIES = True
        if not found.ok:
            raise SystemExit(f"verify found {found.finding} in an untouched log")
        rate = found.rows / timer.wall
        what = f"verify {label}" + ("" if copies else ", without the column check")
        note = f"{timer.wall:.1f} s, CPU {timer.cpu:.1f} s" + (
            f" + PostgreSQL {timer.db_cpu:.1f} s" if timer.db_cpu else ""
        )
        report.add(what, f"{rate:,.0f} records/s", f"{rate / floor:.2f}× the floor; {note}")


async def measure_proofs(log: SqlDecisionLog, size: int, report: Report, samples: int) -> None:
    rng = random.Random(SEED + 5)  # noqa: S311 - made-up data, not secrets
    timings, proofs = [], []
    for _ in range(samples):
        seq = rng.randrange(1, size + 1)
        started = time.perf_counter()
        proofs.append(await log.inclusion_proof(seq, size))
        timings.append((time.perf_counter() - started) * 1000)
    if not all(proof.verifies() for proof in proofs):
        raise SystemExit("an inclusion proof does not verify")
    report.add(
        f"inclusion proof at {size:,} (port), ms",
        f"p50 {percentile(timings, 0.5):.2f}  p95 {percentile(timings, 0.95):.2f}",
        f"{samples} random seqs, each proof checked",
    )


# ---- the auditors' API over HTTP ----------------------------------------------------------------
def serve_main(url: str, port: int) -> None:
    """`--serve`: idgate's app (create_app, uvicorn with uvloop) on the bench database, on `port`."""
    import uvloop  # noqa: PLC0415 - only the server process needs it

    from idgate.entrypoints.http import create_app  # noqa: PLC0415
    from idgate.entrypoints.logs import configure_logging  # noqa: PLC0415
    from idgate.entrypoints.servers import Listener, serve_forever  # noqa: PLC0415
    from idgate.entrypoints.settings import load_settings, with_overrides  # noqa: PLC0415

    keys = Keys.ensure()
    configure_logging("warning")
    settings = with_overrides(
        load_settings(None, {}),
        portone={"url": "http://127.0.0.1:9", "imp_key": "unused", "imp_secret": "unused"},
        database={"url": url},
        keyring={"path": str(keys.keyring)},
        audit={"signing_key_path": str(keys.signing_key), "log_name": LOG_NAME},
        retention={"purge_interval_seconds": 0},
    )
    listener = Listener(create_app(settings), "127.0.0.1", port, "API")
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve_forever([listener], log_level="warning"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def api_server(target: Target, db: Database) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    """idgate in a process of its own on the run's database; a client with an auditor's token."""
    name = f"bench-{os.getpid()}-{time.monotonic_ns()}"
    token = await SqlAccessTokens(db.engine, SystemClock()).create(name, Role.AUDITOR)
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.decision_log", "--serve", target.url, "--port", str(port), cwd=ROOT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as client:
            for _ in range(600):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthz")).status_code == 200:
                        break
                if process.returncode is not None:
                    raise SystemExit(f"the server exited with {process.returncode}")
                await asyncio.sleep(0.1)
            else:
                raise SystemExit("the server did not come up")
            yield client, process.pid
    finally:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()


@dataclass(frozen=True)
class Query:
    name: str
    params: Callable[[random.Random], dict[str, str | int]]


def day(rng: random.Random, days: int = 1) -> dict[str, str | int]:
    """A window of `days` somewhere in the six weeks."""
    start = START + timedelta(days=rng.randrange(0, 42 - days))
    return {"since": start.isoformat(), "until": (start + timedelta(days=days)).isoformat()}


async def queries(target: Target, size: int) -> list[Query]:
    """The filters auditors use, with values drawn from the log itself."""
    if target.database == "sqlite":
        with contextlib.closing(sqlite3.connect(target.name)) as db:
            subjects = [
                r[0]
                for r in db.execute(
                    "SELECT subject FROM decisions WHERE seq % 997 = 0 AND subject IS NOT NULL LIMIT 500"
                )
            ]
    else:
        connection = await asyncpg.connect(libpq(target.url))
        try:
            subjects = [
                r[0]
                for r in await connection.fetch(
                    "SELECT subject FROM decisions WHERE seq % 997 = 0 AND subject IS NOT NULL LIMIT 500"
                )
            ]
        finally:
            await connection.close()
    return [
        Query("verdict=review", lambda rng: {"verdict": "review"}),
        Query("verdict=deny", lambda rng: {"verdict": "deny"}),
        Query(
            "policy+code (3% of decisions)",
            lambda rng: {"policy": "duplicate_identity", "code": "identity_bound_elsewhere"},
        ),
        Query("policy+code (rare: 0.07%)", lambda rng: {"policy": "device_risk", "code": "policy_error"}),
        Query(
            "policy+outcome+code", lambda rng: {"policy": "age_limit", "outcome": "deny", "code": "under_age"}
        ),
        Query("subject", lambda rng: {"subject": rng.choice(subjects)}),
        Query("imp_uid", lambda rng: {"imp_uid": f"imp_{100_000_000_000 + rng.randrange(size)}"}),
        Query("provider=pass (2%)", lambda rng: {"provider": "pass"}),
        Query("time range: one day", day),
        Query(
            "time range + verdict=deny + provider",
            lambda rng: {**day(rng, 7), "verdict": "deny", "provider": "kakao"},
        ),
        Query(
            "time range + policy+code",
            lambda rng: {**day(rng, 7), "policy": "age_limit", "code": "under_age"},
        ),
        Query("page: before=random", lambda rng: {"before": rng.randrange(2, size)}),
        Query(
            "page: verdict=allow, before=random",
            lambda rng: {"verdict": "allow", "before": rng.randrange(2, size)},
        ),
        Query(
            "page: provider=kcp, before=random",
            lambda rng: {"provider": "kcp", "before": rng.randrange(2, size)},
        ),
    ]


QUERY_LIMIT = 10.0  # seconds: a filter slower than this is named, not measured


async def measure_queries(target: Target, db: Database, size: int, report: Report, *, samples: int) -> None:
    """Each filter over HTTP, one request at a time. A filter whose first request takes longer than
    QUERY_LIMIT is reported as such, and the server (still busy with it) is replaced."""
    rng = random.Random(SEED + 7)  # noqa: S311 - made-up data, not secrets
    async with contextlib.AsyncExitStack() as stack:
        server: tuple[httpx.AsyncClient, int] | None = None
        for query in await queries(target, size):
            if server is None:
                server = await stack.enter_async_context(api_server(target, db))
            client, pid = server
            started = time.perf_counter()
            try:
                (
                    await client.get("/decisions", params=query.params(rng), timeout=QUERY_LIMIT)
                ).raise_for_status()
            except httpx.TimeoutException:
                report.add(
                    f"GET /decisions {query.name}, ms", f"over {QUERY_LIMIT * 1000:,.0f}", "not measured"
                )
                await stack.aclose()
                server = None
                continue
            slow = time.perf_counter() - started > 1
            for _ in range(0 if slow else 4):  # warm up
                (await client.get("/decisions", params=query.params(rng))).raise_for_status()
            timings = []
            cpu = process_cpu(pid)
            count = 5 if slow else samples
            for _ in range(count):
                started = time.perf_counter()
                answer = await client.get("/decisions", params=query.params(rng))
                timings.append((time.perf_counter() - started) * 1000)
                answer.raise_for_status()
            per = (process_cpu(pid) - cpu) / count * 1000
            report.add(
                f"GET /decisions {query.name}, ms",
                f"p50 {percentile(timings, 0.5):.1f}  p95 {percentile(timings, 0.95):.1f}",
                f"max {max(timings):.1f}; server CPU {per:.1f} ms/request"
                + ("; 5 requests only" if slow else ""),
            )


async def measure_show(
    client: httpx.AsyncClient, target: Target, size: int, report: Report, samples: int
) -> None:
    rng = random.Random(SEED + 9)  # noqa: S311 - made-up data, not secrets
    ids = []
    for _ in range(samples):
        seq = rng.randrange(1, size + 1)
        (record,) = await raw_records(target, seq, seq)
        ids.append(records_parse(record)["decision_id"])
    timings = []
    for decision_id in ids:
        started = time.perf_counter()
        answer = await client.get(f"/decisions/{decision_id}")
        timings.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
        if not answer.json()["proof"]["verifies"]:
            raise SystemExit("GET /decisions/{id}: the proof does not verify")
    report.add(
        "GET /decisions/{id} (record + proof), ms",
        f"p50 {percentile(timings, 0.5):.1f}  p95 {percentile(timings, 0.95):.1f}",
        f"max {max(timings):.1f}; {samples} random ids",
    )


# ---- appending ----------------------------------------------------------------------------------
def new_entries(count: int, after: int) -> list[LogEntry]:
    """`count` decisions made after the log's `after` entries (new ids, imp_uids and times)."""
    made = []
    for decision, ref in decisions(count, first=after):
        made.append(LogEntry.of(decision, ref))
    return made


def entry_cost(count: int, after: int, report: Report) -> None:
    """CPU of turning a decision into its record, before the write's transaction begins."""
    made = [d for d in decisions(count, first=after)]
    started = time.process_time()
    for decision, ref in made:
        LogEntry.of(decision, ref)
    report.add(
        "LogEntry.of (record bytes, before the write)",
        f"{(time.process_time() - started) / count * 1e6:,.0f} µs CPU",
        "per decision",
    )


def consumed(entry: LogEntry) -> dict[str, object]:
    d = entry.decision
    return {"imp_uid": d.imp_uid, "decision_id": d.decision_id, "consumed_at": d.decided_at}


async def sqlite_append_cost(target: Target, size: int, report: Report, count: int) -> None:
    """A denial's write through the real runner (group commit, synchronous=full), with the log (the
    store's own `statement_by_statement`) and without it (the consumption row alone); and the append
    statements alone, timed inside the transaction (they run inline on SQLite)."""
    entries = new_entries(2 * count, size)
    async with open_database(DatabaseOptions(url=target.url)) as db:
        runner = db.runner
        with_log: list[float] = []
        without: list[float] = []
        inside: list[float] = []
        cpu = {"with": 0.0, "without": 0.0}

        async def bare(entry: LogEntry) -> None:
            async def work(sql: Any) -> None:
                await sql.execute(_INSERT_CONSUMED, consumed(entry))

            await runner.write(work)

        async def timed_append(entry: LogEntry) -> None:
            async def work(sql: Any) -> None:
                await sql.execute(_INSERT_CONSUMED, consumed(entry))
                started = time.perf_counter()
                await append(sql, entry)
                inside.append((time.perf_counter() - started) * 1e6)

            await runner.write(work)

        for n in range(count):
            for kind, timings in (("with", with_log), ("without", without)):
                entry = entries[2 * n + (kind == "without")]
                started, cpu_started = time.perf_counter(), time.process_time()
                if kind == "with":
                    await runner.write(_VerificationRows(entry, None, None, []).statement_by_statement)
                else:
                    await bare(entry)
                timings.append((time.perf_counter() - started) * 1e6)
                cpu[kind] += time.process_time() - cpu_started
        for entry in new_entries(count, size + 2 * count):
            await timed_append(entry)
    added = percentile(with_log, 0.5) - percentile(without, 0.5)
    report.add(
        "a denial's write without the log (p50)",
        f"{percentile(without, 0.5):,.0f} µs",
        f"p95 {percentile(without, 0.95):,.0f}; CPU {cpu['without'] / count * 1e6:,.0f} µs; the consumption row, commit",
    )
    report.add(
        "the same write with its log entry (p50)",
        f"{percentile(with_log, 0.5):,.0f} µs",
        f"p95 {percentile(with_log, 0.95):,.0f}; CPU {cpu['with'] / count * 1e6:,.0f} µs; +{added:,.0f} µs",
    )
    report.add(
        "append's statements inside the transaction",
        f"{percentile(inside, 0.5):,.0f} µs",
        f"p95 {percentile(inside, 0.95):,.0f}; head, decision, results, nodes, head",
    )


def without_log_function() -> str:
    """Revision 0004's function with its log part cut out (the head row, the decision, its results
    and nodes): what a verification's one call costs without appending."""
    start = RECORD_VERIFICATION.index("    -- Last, so the head row")
    last = "    UPDATE log_head SET size = v_size + 1, frontier = v_frontier WHERE id = 1;\n"
    end = RECORD_VERIFICATION.index(last) + len(last)
    body = RECORD_VERIFICATION[:start] + RECORD_VERIFICATION[end:]
    return body.replace("RETURN v_size + 1;", "RETURN 0;").replace(
        "CREATE FUNCTION idgate_record_verification(", "CREATE FUNCTION bench_verification_without_log("
    )


@contextlib.contextmanager
def calling(function: str) -> Iterator[None]:
    """The store's call, made to another function with the same arguments."""
    original = sql_module._RECORD_VERIFICATION
    sql_module._RECORD_VERIFICATION = original.replace("idgate_record_verification(", f"{function}(")
    try:
        yield
    finally:
        sql_module._RECORD_VERIFICATION = original


async def pg_append_cost(target: Target, size: int, report: Report, count: int) -> None:
    """A denial's one call (autocommit, as the store makes it) with the log and without it."""
    entries = new_entries(2 * count, size)
    connection = await asyncpg.connect(libpq(target.url))
    try:
        await connection.execute(without_log_function())
        with_log: list[float] = []
        without: list[float] = []
        cpu = {"with": 0.0, "without": 0.0}
        db_cpu = {"with": 0.0, "without": 0.0}
        sql = PostgresTransaction(connection)
        for n in range(count):
            for kind, timings in (("with", with_log), ("without", without)):
                rows = _VerificationRows(entries[2 * n + (kind == "without")], None, None, [])
                with contextlib.ExitStack() as stack:
                    if kind == "without":
                        stack.enter_context(calling("bench_verification_without_log"))
                    db, started, cpu_started = postgres_cpu(), time.perf_counter(), time.process_time()
                    await rows.in_one_call(sql)
                    timings.append((time.perf_counter() - started) * 1e6)
                    cpu[kind] += time.process_time() - cpu_started
                    db_cpu[kind] += postgres_cpu() - db
        await connection.execute("DROP FUNCTION bench_verification_without_log")
    finally:
        await connection.close()
    added = percentile(with_log, 0.5) - percentile(without, 0.5)
    report.add(
        "a denial's call without the log (p50)",
        f"{percentile(without, 0.5):,.0f} µs",
        f"p95 {percentile(without, 0.95):,.0f}; PostgreSQL CPU {db_cpu['without'] / count * 1e6:,.0f} µs",
    )
    report.add(
        "the same call with its log entry (p50)",
        f"{percentile(with_log, 0.5):,.0f} µs",
        f"p95 {percentile(with_log, 0.95):,.0f}; PostgreSQL CPU {db_cpu['with'] / count * 1e6:,.0f} µs; +{added:,.0f} µs",
    )


@dataclass
class Appender:
    """One connection appending its entries until `stop` (a perf_counter time)."""

    connection: Any
    entries: Sequence[LogEntry]
    stop: float
    latencies: list[float]
    done: int = 0

    async def run(self) -> None:
        sql = PostgresTransaction(self.connection)
        for entry in self.entries:
            if time.perf_counter() >= self.stop:
                return
            started = time.perf_counter()
            await _VerificationRows(entry, None, None, []).in_one_call(sql)
            self.latencies.append((time.perf_counter() - started) * 1000)
            self.done += 1


async def pg_append_rate(
    target: Target, size: int, report: Report, workers: Sequence[int], seconds: float
) -> int:
    """K connections, each making the store's real call (idgate_record_verification, autocommit) one
    after another as fast as it answers: every one of them waits on the head row's lock. Returns
    how many entries were appended."""
    appended = made = 0
    for synchronous in ("on", "off"):
        for k in workers if synchronous == "on" else workers[-1:]:
            per_worker = max(50, int(seconds * 1500 / k))  # more than the time allows
            entries = new_entries(k * per_worker, size + made)  # imp_uids never used before
            made += len(entries)
            connections = [await asyncpg.connect(libpq(target.url)) for _ in range(k)]
            latencies: list[float] = []
            try:
                for connection in connections:
                    await connection.execute(f"SET synchronous_commit = {synchronous}")
                stop = time.perf_counter() + seconds
                appenders = [
                    Appender(c, entries[n * per_worker : (n + 1) * per_worker], stop, latencies)
                    for n, c in enumerate(connections)
                ]
                timer = Timer()
                with timer.timing():
                    await asyncio.gather(*(a.run() for a in appenders))
            finally:
                for connection in connections:
                    await connection.close()
            total = sum(a.done for a in appenders)
            appended += total
            report.add(
                f"appends/s at the head-row lock, {k} connection{'s' if k > 1 else ''}"
                + ("" if synchronous == "on" else ", synchronous_commit=off"),
                f"{total / timer.wall:,.0f} appends/s",
                f"p50 {percentile(latencies, 0.5):.2f} ms, p99 {percentile(latencies, 0.99):.2f} ms; "
                f"PostgreSQL CPU {timer.db_cpu / total * 1e6:,.0f} µs/append",
            )
    return appended


# ---- the run ------------------------------------------------------------------------------------
PARTS = ("verify", "proofs", "http", "append")


async def one_database(database: str, args: argparse.Namespace, keys: Keys) -> Report:
    report = Report(database)
    print(f"\n{database}: a log of {args.records:,} decisions", flush=True)
    async with run_copy(database, args.records, keys, rebuild=args.rebuild) as target:
        for statement in args.index:
            await execute_on(target, statement)
            report.add("index added for this run", statement[:60])
        size = args.records
        async with opened(target, keys) as (db, log):
            if "verify" in args.parts:
                floor = await measure_floor(target, size, report)
                await measure_verify(log, keys, report, floor, f"at {size:,}")
            if "proofs" in args.parts:
                await measure_proofs(log, size, report, args.proofs)
                async with api_server(target, db) as (client, _):
                    await measure_show(client, target, size, report, args.proofs // 4)
            if "http" in args.parts:
                await measure_queries(target, db, size, report, samples=args.queries)
        if "append" not in args.parts:
            return report
        entry_cost(2000, size, report)
        if database == "sqlite":
            await sqlite_append_cost(target, size, report, args.appends)
            return report
        await pg_append_cost(target, size, report, args.appends)
        appended = await pg_append_rate(target, size + 2 * args.appends, report, args.workers, args.seconds)
        async with opened(target, keys) as (db, log):
            head = await log.head()
            timer = Timer()
            with timer.timing():
                found = await log.verify(keys.checker())
            report.add(
                "the log after the appends: verify",
                "ok" if found.ok else f"NOT OK: {found.finding}",
                f"{head.size:,} entries (+{head.size - size:,}); {found.rows / timer.wall:,.0f} records/s",
            )
            if head.size != size + args.appends + appended:  # the calls without the log append nothing
                raise SystemExit(f"the log has {head.size:,} entries, not {size + args.appends + appended:,}")
    return report


async def execute_on(target: Target, statement: str) -> None:
    if target.database == "sqlite":
        with contextlib.closing(sqlite3.connect(target.name)) as db:
            db.execute(statement)
        return
    connection = await asyncpg.connect(libpq(target.url))
    try:
        await connection.execute(statement)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


def print_table(reports: Sequence[Report], args: argparse.Namespace) -> None:
    print(f"\nThe decision log, {args.records:,} records ({os.cpu_count()} cores, figures of one run)")
    for report in reports:
        print(f"\n{report.database}")
        for row in report.rows:
            print(f"  {row.what:48s} {row.figure:>24s}  {row.note}")


async def main(args: argparse.Namespace) -> None:
    if args.drop_cache:
        await drop_cache()
        return
    keys = Keys.ensure()
    check_builder(keys)
    reports = []
    for database in ("sqlite", "postgresql") if args.database == "both" else (args.database,):
        reports.append(await one_database(database, args, keys))
    print_table(reports, args)


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000, help="entries in the log")
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--proofs", type=int, default=2000, help="inclusion proofs timed")
    parser.add_argument("--queries", type=int, default=200, help="requests timed for each filter")
    parser.add_argument("--appends", type=int, default=1000, help="writes timed with and without the log")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2, 4, 8], help="PostgreSQL connections appending"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="how long each append rate runs")
    parser.add_argument(
        "--index", action="append", default=[], help="CREATE INDEX … to add to this run's copy"
    )
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure")
    parser.add_argument("--rebuild", action="store_true", help="build the cached log again")
    parser.add_argument("--drop-cache", action="store_true", help="remove the cached logs and stop")
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_main(args.serve, args.port)
        return
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
