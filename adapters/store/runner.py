"""Where the store's SQL runs. The store writes each operation once, as a plain function over a
synchronous SQLAlchemy connection; a runner decides where that function executes.

- SQLite (`SqliteRunner`): every write transaction runs whole on one writer thread. SQLite allows one
  writer at a time anyway: here writers queue in the process instead of sleeping in SQLite's busy
  handler (1, 2, 5 … 100 ms at a time, the source of seconds of tail latency), and a verification's
  write costs one thread hop instead of one per statement (aiosqlite's model). Reads are indexed
  point lookups that WAL lets run beside the writer without waiting; they run inline on the event
  loop, which is cheaper than handing them to a thread and back.
- Anything else (`AsyncEngineRunner`): the function runs in the async driver's connection through
  SQLAlchemy's `run_sync`; the database serialises writers with its own locks.

Group commit (several verifications in one SQLite transaction, one SAVEPOINT each) was measured and
left out: on this machine's storage the commit is cheap and the savepoints cost more than they saved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from .errors import translated_errors

T = TypeVar("T")


class SqlRunner(Protocol):
    async def read(self, work: Callable[[sa.Connection], T]) -> T: ...

    async def write(self, work: Callable[[sa.Connection], T]) -> T:
        """Run `work` in a transaction: committed when this returns, rolled back if `work` raises."""
        ...

    async def aclose(self) -> None: ...


class AsyncEngineRunner:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def read(self, work: Callable[[sa.Connection], T]) -> T:
        async with translated_errors(), self._engine.connect() as connection:
            return await connection.run_sync(work)

    async def write(self, work: Callable[[sa.Connection], T]) -> T:
        async with translated_errors(), self._engine.begin() as connection:
            return await connection.run_sync(work)

    async def aclose(self) -> None:
        """The engine belongs to whoever made it."""


class SqliteRunner:
    def __init__(self, reader: sa.Engine, writer: sa.Engine) -> None:
        self._reader = reader
        self._writer = writer
        self._writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="idgate-sqlite-writer")

    async def read(self, work: Callable[[sa.Connection], T]) -> T:
        async with translated_errors():
            with self._reader.connect() as connection:
                return work(connection)

    async def write(self, work: Callable[[sa.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        async with translated_errors():
            return await loop.run_in_executor(self._writer_thread, self._transaction, work)

    def _transaction(self, work: Callable[[sa.Connection], T]) -> T:
        with self._writer.begin() as connection:
            return work(connection)

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._writer_thread.shutdown)
        self._reader.dispose()
        self._writer.dispose()
