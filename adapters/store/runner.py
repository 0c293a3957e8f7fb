"""Where the store's hot-path SQL runs. The store writes each operation once, as an async function over
a `Transaction` (plain SQL with `:name` parameters); a runner decides where that function executes.

- SQLite (`SqliteRunner`, here): the driver's own connections, no SQLAlchemy in between. Reads are
  indexed point lookups that WAL lets run beside a writer without waiting; they run inline on the
  event loop. Writes go by group commit: each write's statements run inline in a savepoint of a
  shared transaction, and its COMMIT (the fsync) on a writer thread (inline when no other request is
  in flight), for every write that arrived while the previous one was under way. Writers queue in
  the process instead of sleeping in SQLite's busy handler (1, 2, 5 … 100 ms at a time, once the
  source of seconds of tail latency), and the loop waits neither for the disk nor for the lock. WAL
  checkpoints run on the writer thread between commits.
- PostgreSQL (`PostgresRunner`, in postgres.py): asyncpg's own pool, a transaction per write; the
  database serialises writers with its row locks, constraints and advisory locks, so several
  processes can share it.

Why plain SQL: SQLAlchemy's per-statement work (cache keys, parameter processing, result objects) cost
more than SQLite executing the statements (docs/performance.md). The statements are few and short;
the tables are still declared once, in tables.py, and the contract tests hold the two together.

The Transaction is async because asyncpg is. On SQLite nothing in it ever waits: a write's function
runs to its end without giving the loop a turn (`_run_inline` insists), which is what lets several
writes share one transaction without interleaving.

An earlier group commit through SQLAlchemy's savepoints cost more than it saved; on the driver a
savepoint is two short statements, and sharing the fsync pays for them many times over.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import sqlite3
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from idgate.adapters.telemetry import STORE_READ, STORE_WRITE

from .errors import ConstraintViolated, translated_errors
from .tables import naive_utc

log = structlog.get_logger("idgate.store")
T = TypeVar("T")
Params = Mapping[str, object]


_NAMED_PARAMETERS = sqlite_dialect(paramstyle="named")


def plain_sql(statement: sa.ClauseElement, *, columns: list[str] | None = None) -> str:
    """A Core statement as plain SQL with `:name` parameters, what every Transaction runs; compiled
    once, at import, by the modules that hold their statements as constants."""
    return str(statement.compile(dialect=_NAMED_PARAMETERS, column_keys=columns))


class Transaction(Protocol):
    """Plain SQL with `:name` parameters; rows have one attribute per selected column.

    A violated constraint raises ConstraintViolated, whichever the database.
    """

    async def first(self, sql: str, params: Params) -> Any | None: ...

    async def all(self, sql: str, params: Params) -> list[Any]: ...

    async def execute(self, sql: str, params: Params) -> int:
        """Run one statement; returns the number of rows it changed."""
        ...

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None: ...

    async def lock(self, name: str) -> None:
        """Hold off every other transaction that locks `name` until this one ends.

        For what no row can lock yet: two verifications binding the same subject for the first time.
        """
        ...


Work = Callable[[Transaction], Awaitable[T]]


class SqlRunner(Protocol):
    async def read(self, work: Work[T]) -> T: ...

    async def write(self, work: Work[T]) -> T:
        """Run `work` in a transaction: committed when this returns, rolled back if `work` raises."""
        ...

    async def aclose(self) -> None: ...


# ---- SQLite -------------------------------------------------------------------------------------
def _sqlite_time(value: datetime) -> str:
    """SQLite has no time type: UTC as text, in the format SQLAlchemy reads and writes elsewhere."""
    return naive_utc(value).isoformat(" ", "microseconds")


def _sqlite_params(params: Params) -> dict[str, object]:
    return {k: _sqlite_time(v) if isinstance(v, datetime) else v for k, v in params.items()}


@functools.lru_cache(maxsize=256)
def record_type(names: tuple[str, ...]) -> Callable[..., Any]:
    """A row type with one attribute per column; `SELECT 1` names a column "1", hence `rename`."""
    return collections.namedtuple("Record", names, rename=True)


def _record(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Any:
    return record_type(tuple(column[0] for column in cursor.description))(*values)


class SqliteTransaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    async def first(self, sql: str, params: Params) -> Any | None:
        return self._connection.execute(sql, _sqlite_params(params)).fetchone()

    async def all(self, sql: str, params: Params) -> list[Any]:
        return self._connection.execute(sql, _sqlite_params(params)).fetchall()

    async def execute(self, sql: str, params: Params) -> int:
        try:
            return self._connection.execute(sql, _sqlite_params(params)).rowcount
        except sqlite3.IntegrityError as exc:
            raise ConstraintViolated(str(exc)) from exc

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        try:
            self._connection.executemany(sql, [_sqlite_params(row) for row in rows])
        except sqlite3.IntegrityError as exc:
            raise ConstraintViolated(str(exc)) from exc

    async def lock(self, name: str) -> None:
        """Nothing to do: SQLite has one writer at a time, and writes in one process take turns."""


def _run_inline(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits to its end, here and now.

    A write's function awaits only SqliteTransaction's methods, which return at once; should it ever
    wait on something else, other writes could run in the middle of it, so that is refused.
    """
    try:
        work.send(None)
    except StopIteration as finished:
        result: T = finished.value
        return result
    work.close()
    raise RuntimeError("a SQLite write waited on something; it must run without giving the loop a turn")


_ROLLED_BACK = sqlite3.OperationalError("the transaction was rolled back with another write in it")


@dataclass(slots=True)
class _Write:
    work: Work[Any]
    done: asyncio.Future[Any]
    result: Any = None


class SqliteRunner:
    """Reads inline on the event loop; writes by group commit.

    A write's statements run inline on the loop, each write in its own SAVEPOINT of a shared
    transaction; the COMMIT (the fsync, with `synchronous=full`) runs on a writer thread, or inline
    when no other request is in flight, and every write in it is acknowledged once it is on disk. Writes that arrive while a commit is under way
    form the next transaction, so under load one fsync covers many verifications, and the loop never
    waits on the disk. A write that fails rolls back to its savepoint and fails alone, at once.

    The loop never waits for SQLite's lock either: the connection's busy timeout is zero while it
    begins inline. When anything else holds the lock (another process rotating keys, idgate's own
    maintenance connections), the transaction begins on the writer thread instead, which waits there.
    WAL checkpoints also run on the thread, never inside a commit.
    """

    CHECKPOINT_EVERY = 200  # commits; a checkpoint copies the WAL into the database file
    LOCK_WAIT_MS = 30_000  # how long a transaction waits for another holder of SQLite's write lock

    def __init__(
        self, path: Path, *, prepare: Callable[[sqlite3.Connection], None], check: Callable[[], None]
    ) -> None:
        self._check = check  # before every transaction: raises when the file was deleted or replaced
        self._reader = self._connect(path, prepare)
        self._writer = self._connect(path, prepare)
        self._writer.execute("PRAGMA busy_timeout=0")
        # Each write runs in a savepoint, and SQLite copies every page the savepoint changes (that
        # existed before it) into a statement journal, for ROLLBACK TO. Past 64 KiB, which an allow
        # with its identity and index rows passes, that journal spills into a new temporary file: an
        # open, an unlink and a write per page, for every write. It only serves the open transaction
        # (the WAL makes commits durable), so memory loses nothing. Measured in-process, allow path:
        # the write statements 450 → 330 µs, the index rows 96 → 42 µs.
        self._writer.execute("PRAGMA temp_store=MEMORY")
        self._checkpointer = self._connect(path, prepare)  # used on the writer thread only
        self._writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="idgate-sqlite-writer")
        self._waiting: list[_Write] = []  # arrived while a transaction was being committed
        self._busy = False  # a transaction is open on the writer connection (beginning or committing)
        self._idle = asyncio.Event()
        self._idle.set()
        self._commits = 0
        self._checkpoint: asyncio.Future[None] | None = None
        # Tasks that outlive every request (the server's, the app's lifespan): they never wait on a commit.
        self._long_lived: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        with contextlib.suppress(RuntimeError):  # made outside an event loop: no such tasks
            self._long_lived.update(asyncio.all_tasks())

    @staticmethod
    def _connect(path: Path, prepare: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
        # isolation_level=None: the driver opens no transactions of its own; writes say BEGIN IMMEDIATE.
        connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        connection.row_factory = _record
        prepare(connection)
        # No checkpoint inside a commit: checkpoints run on the writer thread, see _committed.
        connection.execute("PRAGMA wal_autocheckpoint=0")
        return connection

    async def read(self, work: Work[T]) -> T:
        with STORE_READ.time():
            async with translated_errors():
                self._check()
                return await work(SqliteTransaction(self._reader))

    async def write(self, work: Work[T]) -> T:
        with STORE_WRITE.time():
            write = _Write(work, asyncio.get_running_loop().create_future())
            self._waiting.append(write)
            if not self._busy:
                self._start_transaction()
            async with translated_errors():
                result: T = await write.done
                return result

    # ---- one group-commit transaction: begin, run the writes, commit on the thread ----------------
    def _start_transaction(self) -> None:
        writes, self._waiting = self._waiting, []
        self._busy = True
        self._idle.clear()
        try:
            self._check()
            self._writer.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                self._fail(writes, exc)
                return
            # Someone else holds the lock: wait for it on the thread, not here.
            begun = asyncio.get_running_loop().run_in_executor(self._writer_thread, self._begin_waiting)
            begun.add_done_callback(lambda future: self._begun(future, writes))
            return
        except Exception as exc:  # noqa: BLE001 - the file watch refused, or the database is gone: each caller gets it
            self._fail(writes, exc)
            return
        self._run_and_commit(writes)

    def _begin_waiting(self) -> None:
        self._writer.execute(f"PRAGMA busy_timeout={self.LOCK_WAIT_MS}")
        try:
            self._writer.execute("BEGIN IMMEDIATE")
        finally:
            self._writer.execute("PRAGMA busy_timeout=0")

    def _begun(self, future: asyncio.Future[None], writes: list[_Write]) -> None:
        if (error := future.exception()) is not None:
            self._fail(writes, error)
        else:
            self._run_and_commit(writes)

    def _run_and_commit(self, writes: list[_Write]) -> None:
        done: list[_Write] = []
        try:
            for index, write in enumerate(writes):
                succeeded = self._run_one(write)
                if not self._writer.in_transaction:
                    # A write failed so badly that SQLite rolled the whole transaction back: the writes
                    # already run are lost with it, those not yet run go into the next transaction.
                    self._waiting[:0] = writes[index + 1 :]
                    self._fail(done, _ROLLED_BACK)
                    return
                if succeeded:
                    done.append(write)
        except Exception as exc:  # noqa: BLE001 - a savepoint itself failed: nothing of this transaction stands
            if self._writer.in_transaction:
                self._writer.execute("ROLLBACK")
            self._fail([w for w in writes if not w.done.done()], exc)
            return
        loop = asyncio.get_running_loop()
        if not self._waiting and self._nothing_else_in_flight():
            # Nobody else to serve while the fsync runs, so it runs here: the thread's hand-over
            # costs more (measured at c=1: 9.1 context switches a request against 6.1, 2.5 ms of CPU
            # against 2.1). Under load the commit goes to the thread and the loop keeps serving.
            committed: asyncio.Future[None] = loop.create_future()
            try:
                self._commit()
            except Exception as exc:  # noqa: BLE001 - handed to the waiting writes, as from the thread
                committed.set_exception(exc)
            else:
                committed.set_result(None)
            self._committed(committed, done)
            return
        committed = loop.run_in_executor(self._writer_thread, self._commit)
        committed.add_done_callback(lambda future: self._committed(future, done))

    def _nothing_else_in_flight(self) -> bool:
        """No task but this one (and those that were there before the store, such as the server's own)."""
        current = asyncio.current_task()
        return all(task is current or task in self._long_lived for task in asyncio.all_tasks())

    def _run_one(self, write: _Write) -> bool:
        """Run one write in its savepoint; False when it failed (its caller has the error already)."""
        connection = self._writer
        connection.execute("SAVEPOINT one_write")
        try:
            write.result = _run_inline(_coroutine(write.work(SqliteTransaction(connection))))
        except Exception as exc:  # noqa: BLE001 - it is the caller's error, handed over through its future
            _settle(write, error=exc)
            if connection.in_transaction:
                connection.execute("ROLLBACK TO one_write")
                connection.execute("RELEASE one_write")
            return False
        connection.execute("RELEASE one_write")
        return True

    def _commit(self) -> None:
        try:
            self._writer.execute("COMMIT")
        except BaseException:
            if self._writer.in_transaction:
                self._writer.execute("ROLLBACK")
            raise

    def _committed(self, future: asyncio.Future[None], writes: list[_Write]) -> None:
        error = future.exception()
        for write in writes:
            _settle(write, error=error)
        self._busy = False
        self._commits += 1
        if self._commits % self.CHECKPOINT_EVERY == 0 and (
            self._checkpoint is None or self._checkpoint.done()
        ):
            self._checkpoint = asyncio.get_running_loop().run_in_executor(
                self._writer_thread, self._checkpoint_wal
            )
        if self._waiting:
            self._start_transaction()
        else:
            self._idle.set()

    def _fail(self, writes: list[_Write], error: BaseException) -> None:
        for write in writes:
            _settle(write, error=error)
        self._busy = False
        if self._waiting:  # they may fare better: a refused file watch or a lock timeout can pass
            asyncio.get_running_loop().call_soon(self._start_if_idle)
        else:
            self._idle.set()

    def _start_if_idle(self) -> None:
        if not self._busy and self._waiting:  # a new write may have started one in the meantime
            self._start_transaction()

    def _checkpoint_wal(self) -> None:
        # PASSIVE: copies what no reader still needs and never waits for readers or writers. Once a
        # checkpoint caught up, the next write starts the WAL file over instead of growing it.
        try:
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # the next one tries again; nothing depends on this one
            log.warning("sqlite_checkpoint_failed", error_type=type(exc).__name__)

    async def aclose(self) -> None:
        await self._idle.wait()  # every write handed in is committed or failed
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer_thread, self._checkpoint_wal)
        await loop.run_in_executor(None, self._writer_thread.shutdown)
        for connection in (self._reader, self._writer, self._checkpointer):
            connection.close()


def _settle(write: _Write, *, error: BaseException | None) -> None:
    if write.done.done():  # the caller went away (cancelled); the work stands or falls all the same
        return
    if error is None:
        write.done.set_result(write.result)
    else:
        write.done.set_exception(error)


def _coroutine(awaitable: Awaitable[T]) -> Coroutine[Any, Any, T]:
    if not asyncio.iscoroutine(awaitable):
        raise TypeError("a write's work must be an async function")
    return awaitable
