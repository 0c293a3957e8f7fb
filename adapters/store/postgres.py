"""PostgreSQL: the store's hot path on asyncpg's own pool, shared safely by several worker processes.

Nothing here serialises writers in the process: the database does, with what each statement says.
A replayed imp_uid waits on the first one's primary key and then violates it; a merchant_uid is used
by an UPDATE that re-checks `used_at IS NULL` after waiting for the row; two people binding one CI or
DI wait on the unique index; and two verifications binding one subject take an advisory lock on it
(`Transaction.lock`), because before the first binding there is no row to lock.

asyncpg, not SQLAlchemy, on the hot path, for the same reason as on SQLite (runner.py): SQLAlchemy's
per-statement work cost several times the driver's. asyncpg prepares each statement once per
connection and keeps it, so a verification sends only Bind/Execute messages. Connections come from
a fixed pool per worker and go back to it without asyncpg's default reset (`RESET ALL` and friends,
a round trip each time): idgate sets no session state, and advisory locks are transaction-scoped.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import sqlalchemy as sa

from idgate.adapters.telemetry import STORE_READ, STORE_WRITE

from .errors import ConstraintViolated, translated_errors
from .runner import Params, Work, record_type

if TYPE_CHECKING:  # generic only in asyncpg-stubs
    from asyncpg.pool import PoolConnectionProxy

    Connection = asyncpg.Connection[Any] | PoolConnectionProxy[Any]

T = TypeVar("T")
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=256)
def _positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """`:name` parameters as asyncpg's `$1, $2 …`, and the names in their order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _NAMED.sub(number, sql), tuple(names)


def lock_key(name: str) -> int:
    """A name as the 64-bit key of a PostgreSQL advisory lock."""
    digest = hashlib.sha256(b"idgate/lock/v1\0" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _row(record: asyncpg.Record) -> Any:
    return record_type(tuple(record.keys()))(*record.values())


class PostgresTransaction:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def first(self, sql: str, params: Params) -> Any | None:
        text, names = _positional(sql)
        try:
            record = await self._connection.fetchrow(text, *(params[name] for name in names))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise _violated(exc) from exc
        return None if record is None else _row(record)

    async def all(self, sql: str, params: Params) -> list[Any]:
        text, names = _positional(sql)
        return [_row(r) for r in await self._connection.fetch(text, *(params[name] for name in names))]

    async def execute(self, sql: str, params: Params) -> int:
        text, names = _positional(sql)
        try:
            status: str = await self._connection.execute(text, *(params[name] for name in names))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise _violated(exc) from exc
        # The command tag: "INSERT 0 1", "UPDATE 3", "DELETE 0".
        return int(status.rsplit(" ", 1)[-1]) if status[-1:].isdigit() else 0

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        text, names = _positional(sql)
        try:
            await self._connection.executemany(text, [tuple(row[name] for name in names) for row in rows])
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise _violated(exc) from exc

    async def lock(self, name: str) -> None:
        await self._connection.execute("SELECT pg_advisory_xact_lock($1)", lock_key(name))


def _violated(exc: asyncpg.IntegrityConstraintViolationError) -> ConstraintViolated:
    constraint = getattr(exc, "constraint_name", None) or ""
    return ConstraintViolated(type(exc).__name__, constraint)


async def _keep_session(_connection: asyncpg.Connection[Any]) -> None:
    """Release a connection to the pool as it is (see the module's docstring)."""


class PostgresRunner:
    """Reads on a pooled connection, outside any transaction; each write in a transaction of its own."""

    def __init__(self, pool: asyncpg.Pool[Any], *, acquire_timeout: float) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, url: sa.URL, *, size: int, connect_timeout: float, statement_timeout: float
    ) -> AsyncIterator[PostgresRunner]:
        """A pool of up to `size` connections to `url`; every statement is bounded by `statement_timeout`.

        One connection is made at once, so that an unreachable database is noticed at start-up.
        """
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        async with translated_errors():
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=size,
                timeout=connect_timeout,
                command_timeout=statement_timeout,
                reset=_keep_session,
            )
        try:
            yield cls(pool, acquire_timeout=connect_timeout + statement_timeout)
        finally:
            await pool.close()

    async def read(self, work: Work[T]) -> T:
        with STORE_READ.time():
            async with (
                translated_errors(),
                self._pool.acquire(timeout=self._acquire_timeout) as connection,
            ):
                return await work(PostgresTransaction(connection))

    async def write(self, work: Work[T]) -> T:
        with STORE_WRITE.time():
            async with (
                translated_errors(),
                self._pool.acquire(timeout=self._acquire_timeout) as connection,
                connection.transaction(),
            ):
                return await work(PostgresTransaction(connection))

    async def autocommit(self, work: Work[T]) -> T:
        """Run `work` outside an explicit transaction: each statement commits by itself. For work that is
        one statement (a function call doing a whole transaction's writes), that saves BEGIN and COMMIT,
        two round trips."""
        with STORE_WRITE.time():
            async with (
                translated_errors(),
                self._pool.acquire(timeout=self._acquire_timeout) as connection,
            ):
                return await work(PostgresTransaction(connection))

    async def aclose(self) -> None:
        """The pool belongs to whoever opened it (`open` closes it)."""
