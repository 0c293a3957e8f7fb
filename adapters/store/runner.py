"""Where the store's hot-path SQL runs. The store writes each operation once, as a plain function over
a `Transaction` (plain SQL with `:name` parameters); a runner decides where that function executes.

- SQLite (`SqliteRunner`): the driver's own connections, no SQLAlchemy in between. Every write
  transaction runs whole on one writer thread: SQLite allows one writer at a time anyway, so writers
  queue in the process instead of sleeping in SQLite's busy handler (1, 2, 5 … 100 ms at a time, the
  source of seconds of tail latency), and a verification's write costs one thread hop. Reads are
  indexed point lookups that WAL lets run beside the writer without waiting; they run inline on the
  event loop, which is cheaper than handing them to a thread and back.
- Anything else (`AsyncEngineRunner`): the function runs in the async driver's connection through
  SQLAlchemy's `run_sync`; the database serialises writers with its own locks.

Why plain SQL: SQLAlchemy's per-statement work (cache keys, parameter processing, result objects) cost
more than SQLite executing the statements (docs/performance.md). The statements are few and short;
the tables are still declared once, in tables.py, and the contract tests hold the two together.

Group commit (several verifications in one SQLite transaction, one SAVEPOINT each) was measured and
left out: on this machine's storage the commit is cheap and the savepoints cost more than they saved.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from .errors import ConstraintViolated, translated_errors

T = TypeVar("T")
Params = Mapping[str, object]


class Transaction(Protocol):
    """Plain SQL with `:name` parameters; rows have one attribute per selected column.

    A violated constraint raises ConstraintViolated, whichever the database.
    """

    def first(self, sql: str, params: Params) -> Any | None: ...

    def all(self, sql: str, params: Params) -> list[Any]: ...

    def execute(self, sql: str, params: Params) -> int:
        """Run one statement; returns the number of rows it changed."""
        ...

    def execute_many(self, sql: str, rows: Sequence[Params]) -> None: ...


class SqlRunner(Protocol):
    async def read(self, work: Callable[[Transaction], T]) -> T: ...

    async def write(self, work: Callable[[Transaction], T]) -> T:
        """Run `work` in a transaction: committed when this returns, rolled back if `work` raises."""
        ...

    async def aclose(self) -> None: ...


def as_utc(value: datetime | str) -> datetime:
    """A stored time as an aware UTC datetime, whether the driver returned text (SQLite) or not."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ---- SQLite -------------------------------------------------------------------------------------
def _sqlite_time(value: datetime) -> str:
    """SQLite has no time type: UTC as text, in the format SQLAlchemy reads and writes elsewhere."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored; pass an aware datetime")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_params(params: Params) -> dict[str, object]:
    return {k: _sqlite_time(v) if isinstance(v, datetime) else v for k, v in params.items()}


@functools.lru_cache(maxsize=256)
def _record_type(names: tuple[str, ...]) -> Callable[..., Any]:
    return collections.namedtuple("Record", names, rename=True)  # `SELECT 1` names a column "1"


def _record(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Any:
    return _record_type(tuple(column[0] for column in cursor.description))(*values)


class SqliteTransaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def first(self, sql: str, params: Params) -> Any | None:
        return self._connection.execute(sql, _sqlite_params(params)).fetchone()

    def all(self, sql: str, params: Params) -> list[Any]:
        return self._connection.execute(sql, _sqlite_params(params)).fetchall()

    def execute(self, sql: str, params: Params) -> int:
        try:
            return self._connection.execute(sql, _sqlite_params(params)).rowcount
        except sqlite3.IntegrityError as exc:
            raise ConstraintViolated(str(exc)) from exc

    def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        try:
            self._connection.executemany(sql, [_sqlite_params(row) for row in rows])
        except sqlite3.IntegrityError as exc:
            raise ConstraintViolated(str(exc)) from exc


class SqliteRunner:
    def __init__(
        self, path: Path, *, prepare: Callable[[sqlite3.Connection], None], check: Callable[[], None]
    ) -> None:
        self._check = check  # before every use: raises when the file was deleted or replaced
        # One connection each: the event loop reads with one, the writer thread writes with the other.
        self._reader = self._connect(path, prepare)
        self._writer = self._connect(path, prepare)
        self._writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="idgate-sqlite-writer")

    @staticmethod
    def _connect(path: Path, prepare: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
        # isolation_level=None: the driver opens no transactions of its own; writes say BEGIN IMMEDIATE.
        connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        connection.row_factory = _record
        prepare(connection)
        return connection

    async def read(self, work: Callable[[Transaction], T]) -> T:
        async with translated_errors():
            self._check()
            return work(SqliteTransaction(self._reader))

    async def write(self, work: Callable[[Transaction], T]) -> T:
        loop = asyncio.get_running_loop()
        async with translated_errors():
            return await loop.run_in_executor(self._writer_thread, self._transaction, work)

    def _transaction(self, work: Callable[[Transaction], T]) -> T:
        self._check()
        connection = self._writer
        # IMMEDIATE takes the write lock before the first read, so what the work reads cannot change
        # under it (another process, such as a key rotation, may be writing too).
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = work(SqliteTransaction(connection))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:  # SQLite rolls some failures back by itself
                connection.execute("ROLLBACK")
            raise
        return result

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._writer_thread.shutdown)
        self._reader.close()
        self._writer.close()


# ---- any other database, through SQLAlchemy ------------------------------------------------------
class SqlAlchemyTransaction:
    def __init__(self, connection: sa.Connection) -> None:
        self._connection = connection

    def first(self, sql: str, params: Params) -> Any | None:
        return self._connection.execute(_text(sql), params).first()

    def all(self, sql: str, params: Params) -> list[Any]:
        return list(self._connection.execute(_text(sql), params).all())

    def execute(self, sql: str, params: Params) -> int:
        try:
            return self._connection.execute(_text(sql), params).rowcount
        except sa.exc.IntegrityError as exc:
            raise ConstraintViolated(str(exc.orig)) from exc

    def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        try:
            self._connection.execute(_text(sql), list(rows))
        except sa.exc.IntegrityError as exc:
            raise ConstraintViolated(str(exc.orig)) from exc


@functools.lru_cache(maxsize=256)
def _text(sql: str) -> sa.TextClause:
    return sa.text(sql)


class AsyncEngineRunner:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def read(self, work: Callable[[Transaction], T]) -> T:
        async with translated_errors(), self._engine.connect() as connection:
            return await connection.run_sync(lambda sync: work(SqlAlchemyTransaction(sync)))

    async def write(self, work: Callable[[Transaction], T]) -> T:
        async with translated_errors(), self._engine.begin() as connection:
            return await connection.run_sync(lambda sync: work(SqlAlchemyTransaction(sync)))

    async def aclose(self) -> None:
        """The engine belongs to whoever made it."""
