"""One configured database: SQLAlchemy's async engine, for the schema and the work off the hot path,
and a runner for the hot path's plain SQL on the driver itself (runner.py, postgres.py).

SQLite (the embedded default, one process) and PostgreSQL (several workers, one or more machines) are
the databases idgate runs on; any other URL is refused with the two forms it takes.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from idgate.domain import ConfigurationError, StoreUnavailable

from .postgres import PostgresRunner
from .runner import SqliteRunner, SqlRunner

log = structlog.get_logger("idgate.store")
SQLITE_CONNECTIONS = 16  # the engine's, off the hot path; each is a thread in aiosqlite
POSTGRES_ENGINE_CONNECTIONS = 2  # the engine's, off the hot path; the runner has its own pool
Dialect = Literal["sqlite", "postgresql"]
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_EXAMPLES = "sqlite+aiosqlite:///.idgate/idgate.db or postgresql+asyncpg://user@host:5432/idgate"


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseOptions:
    """How to reach the database; built from [database] by the composition root."""

    url: str
    sqlite_synchronous: str = "full"
    pool_size: int = 10  # PostgreSQL: connections each worker keeps for verifications
    connect_timeout: float = 5.0  # seconds to get a connection, new or from the pool
    statement_timeout: float = 10.0  # seconds any one statement may take


@dataclass(frozen=True, slots=True)
class Database:
    engine: AsyncEngine
    runner: SqlRunner

    @property
    def dialect(self) -> Dialect:
        name = self.engine.dialect.name
        return "postgresql" if name == "postgresql" else "sqlite"


def parse_url(url: str) -> sa.URL:
    """The URL with idgate's driver for its database; other databases and drivers are refused."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigurationError(
            f"database url is not a valid SQLAlchemy URL; use e.g. {_EXAMPLES}."
        ) from exc
    backend = parsed.get_backend_name()
    if backend not in _DRIVERS or parsed.drivername not in (backend, _DRIVERS[backend]):
        raise ConfigurationError(
            f"database url names {parsed.drivername!r}; idgate runs on SQLite and PostgreSQL with their "
            f"async drivers: {_EXAMPLES}."
        )
    if backend == "sqlite" and (not parsed.database or parsed.database == ":memory:"):
        raise ConfigurationError(
            "database url must name a SQLite file (an in-memory database would lose every decision); "
            "e.g. sqlite+aiosqlite:///.idgate/idgate.db."
        )
    return parsed.set(drivername=_DRIVERS[backend])


@contextlib.asynccontextmanager
async def open_database(
    options: DatabaseOptions, *, write_transactions: bool = False
) -> AsyncIterator[Database]:
    """The engine and the runner on `options.url`; both closed on exit.

    With `write_transactions`, every transaction of the engine on SQLite starts as BEGIN IMMEDIATE:
    it takes the write lock before its first read, so nothing can change between what a batch job
    reads and what it writes (PostgreSQL's batch jobs lock the rows they read instead).
    """
    url = parse_url(options.url)
    engine = create_engine(url, options, write_transactions=write_transactions)
    try:
        if url.get_backend_name() == "sqlite":
            runner = sqlite_runner(url, options.sqlite_synchronous)
            try:
                yield Database(engine, runner)
            finally:
                await runner.aclose()
        else:
            async with PostgresRunner.open(
                url,
                size=options.pool_size,
                connect_timeout=options.connect_timeout,
                statement_timeout=options.statement_timeout,
            ) as pg_runner:
                yield Database(engine, pg_runner)
    finally:
        await engine.dispose()


def create_engine(url: sa.URL, options: DatabaseOptions, *, write_transactions: bool = False) -> AsyncEngine:
    if url.get_backend_name() == "sqlite":
        # A fixed set of long-lived connections: overflow connections would be opened and closed
        # again under load, each with a new thread and its PRAGMAs.
        engine = create_async_engine(
            url,
            connect_args={"timeout": 30},
            hide_parameters=True,
            pool_size=SQLITE_CONNECTIONS,
            max_overflow=0,
        )
        _watch_sqlite(engine.sync_engine, url, options.sqlite_synchronous)
        if write_transactions:
            event.listen(engine.sync_engine, "connect", _driver_autocommit)
            event.listen(engine.sync_engine, "begin", _begin_immediate)
        return engine
    return create_async_engine(
        url,
        hide_parameters=True,
        pool_size=POSTGRES_ENGINE_CONNECTIONS,
        max_overflow=2,
        pool_pre_ping=True,  # off the hot path: a stale connection after a restart is replaced, not used
        pool_timeout=options.connect_timeout,
        connect_args={"timeout": options.connect_timeout, "command_timeout": options.statement_timeout},
    )


def sqlite_runner(url: sa.URL, synchronous: str = "full") -> SqliteRunner:
    if not url.database:
        raise ConfigurationError("database url must name a SQLite file.")
    path = Path(url.database).absolute()
    pragmas = sqlite_pragmas(synchronous)
    return SqliteRunner(
        path,
        prepare=lambda connection: pragmas(connection, None),
        check=SqliteFileWatch(path).check,
    )


def _watch_sqlite(engine: sa.Engine, url: sa.URL, synchronous: str) -> None:
    """Every SQLite connection gets the PRAGMAs; a file database is also watched for replacement."""
    event.listen(engine, "connect", sqlite_pragmas(synchronous))
    if url.database and url.database != ":memory:":
        path = Path(url.database).absolute()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the folder for the SQLite database ({exc.strerror}); fix [database] url."
            ) from exc
        watch = SqliteFileWatch(path)
        event.listen(engine, "checkout", lambda _connection, _record, _proxy: watch.check())


class SqliteFileWatch:
    """Refuses to hand out a connection once the database file was deleted or replaced.

    SQLite keeps writing to a file that was unlinked under it, and a new connection would silently
    create an empty database in its place: either way acknowledged decisions would vanish at the next
    restart. The watch holds a descriptor of the file it first saw (so its inode cannot be reused by a
    replacement) and, at every checkout, checks that the file still has a name and that the path still
    leads to it: an fstat() and a stat().
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._descriptor: int | None = None

    def check(self) -> None:
        if self._descriptor is None:
            try:
                self._descriptor = os.open(self._path, os.O_RDONLY)
            except FileNotFoundError:
                return  # not created yet: the connection being made creates it
            weakref.finalize(self, os.close, self._descriptor)
            return
        ours = os.fstat(self._descriptor)
        try:
            found = os.stat(self._path)
        except FileNotFoundError:
            found = None
        if ours.st_nlink == 0 or found is None or (found.st_dev, found.st_ino) != (ours.st_dev, ours.st_ino):
            log.error("database_file_replaced", present=found is not None)
            raise StoreUnavailable(
                "the SQLite database file was deleted or replaced while idgate was running; nothing "
                "more is written. Restore the file from a backup, then restart idgate."
            )


SYNCHRONOUS = ("full", "normal")


def sqlite_pragmas(synchronous: str) -> Callable[[Any, object], None]:
    """The PRAGMAs every SQLite connection gets.

    `synchronous`: "full" syncs the WAL to disk at every commit, so an acknowledged decision survives
    a power cut; "normal" syncs only at checkpoints, so it survives a crash of idgate (kill -9) but a
    power cut can lose the last commits (consumed imp_uids among them). See docs/performance.md.
    """
    if synchronous not in SYNCHRONOUS:
        raise ConfigurationError(f"database sqlite_synchronous must be one of {', '.join(SYNCHRONOUS)}.")

    def apply(dbapi_connection: Any, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        # Deleted identities must not linger in free pages; Debian's build defaults to it, others may not.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    return apply


def _driver_autocommit(dbapi_connection: Any, _record: object) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event emits BEGIN instead


def _begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")
