"""The databases tests run on: a SQLite file, and a PostgreSQL database of the test's own.

Every test that touches a database runs on both (the `database` fixture in conftest.py). PostgreSQL
is found through IDGATE_TEST_POSTGRES_URL (default: this machine's, trust auth, database `test`);
each test gets a database copied from a template migrated once per run, and drops it afterwards.
A PostgreSQL that cannot be reached fails the run, with what to do; it is never skipped.

Tests read what idgate wrote with their own drivers (sqlite3, psycopg), not with idgate's code, so a
bug in the store cannot hide itself from the test that looks for it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg
import psycopg.sql
import sqlalchemy as sa

POSTGRES_URL = os.environ.get("IDGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
UNREACHABLE = (
    "PostgreSQL is not reachable at {url} ({error}). The tests run every store test on PostgreSQL as "
    "well as SQLite: start it (`pg_ctlcluster --skip-systemctl-redirect 15 main start`), or point "
    "IDGATE_TEST_POSTGRES_URL at one where this user may create databases, e.g. "
    "postgresql://postgres@127.0.0.1:5432/test."
)
Kind = Literal["sqlite", "postgresql"]


@dataclass(frozen=True)
class TestDatabase:
    """One database of one test: the URL idgate is given, and a way to look inside it."""

    __test__ = False  # not a test class, whatever its name says

    kind: Kind
    url: str  # for [database] url
    path: Path | None = None  # the SQLite file

    def sync_engine(self) -> sa.Engine:
        """A synchronous SQLAlchemy engine on this database (pysqlite or psycopg), for Alembic in tests."""
        if self.path is not None:
            return sa.create_engine(f"sqlite:///{self.path}", poolclass=sa.NullPool)
        return sa.create_engine(
            sa.make_url(self.url).set(drivername="postgresql+psycopg"), poolclass=sa.NullPool
        )

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query written with `?` placeholders; rows as tuples (bytes for binary columns)."""
        if self.path is not None:
            with contextlib.closing(sqlite3.connect(self.path)) as db:
                return db.execute(sql, tuple(params)).fetchall()
        with psycopg.connect(libpq_url(self.url), autocommit=True) as db:
            found = db.execute(sql.replace("?", "%s"), tuple(params)).fetchall()
            return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in found]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Change rows behind idgate's back (as an operator with SQL access could); returns the count."""
        if self.path is not None:
            with contextlib.closing(sqlite3.connect(self.path)) as db:
                changed = db.execute(sql, tuple(params)).rowcount
                db.commit()
                return changed
        with psycopg.connect(libpq_url(self.url), autocommit=True) as db:
            return db.execute(sql.replace("?", "%s"), tuple(params)).rowcount

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        found = self.rows(sql, params)
        return found[0][0] if found else None

    def stored_bytes(self) -> dict[str, bytes]:
        """Everything the database holds, as bytes, by where it was found.

        SQLite: the database file, its WAL and its shared memory. PostgreSQL: every value of every
        table as read back (binary columns raw), and the database's own files on disk after a
        checkpoint, when this machine can read them (a remote server's cannot be).
        """
        if self.path is not None:
            return {p.name: p.read_bytes() for p in self.path.parent.glob(self.path.name + "*")}
        found: dict[str, bytes] = {}
        with psycopg.connect(libpq_url(self.url), autocommit=True) as db:
            tables = [r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            for table in tables:
                everything = psycopg.sql.SQL("SELECT * FROM {}").format(psycopg.sql.Identifier(table))
                values = [v for row in db.execute(everything) for v in row if v is not None]
                found[f"table {table}"] = b"\0".join(
                    bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in values
                )
            db.execute("CHECKPOINT")
            data_directory = db.execute("SHOW data_directory").fetchone()
            oid = db.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()
        if data_directory is None or oid is None:
            return found
        folder = Path(data_directory[0]) / "base" / str(oid[0])
        with contextlib.suppress(OSError):
            for file in folder.iterdir():
                found[f"file {file.name}"] = file.read_bytes()
        return found

    def cut_off(self) -> None:
        """Make the database unreachable for idgate: the SQLite file moved away; PostgreSQL refusing
        new connections to this database and ending the open ones."""
        if self.path is not None:
            self.path.rename(self.path.with_name("moved-away.db"))
            return
        name = sa.make_url(self.url).database
        with _admin() as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )

    def reconnect(self) -> None:
        """Undo `cut_off` (PostgreSQL only: a moved SQLite file stays moved)."""
        name = sa.make_url(self.url).database
        with _admin() as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def libpq_url(url: str) -> str:
    """A PostgreSQL URL as libpq (psycopg, psql) takes it."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _admin() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise PostgresUnreachable(UNREACHABLE.format(url=POSTGRES_URL, error=str(exc).strip())) from None


class PostgresUnreachable(Exception):
    pass


def check_postgres() -> None:
    """Raise PostgresUnreachable, saying how to point the tests at a PostgreSQL, unless one answers."""
    with _admin():
        pass


def postgres_url(name: str) -> str:
    return (
        sa.make_url(POSTGRES_URL)
        .set(drivername="postgresql+asyncpg", database=name)
        .render_as_string(hide_password=False)
    )


def create_postgres_database(template: str | None = None) -> str:
    name = f"idgate_test_{secrets.token_hex(6)}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def drop_postgres_database(name: str) -> None:
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def postgres_database(template: str | None = None) -> Iterator[TestDatabase]:
    name = create_postgres_database(template)
    try:
        yield TestDatabase("postgresql", postgres_url(name))
    finally:
        drop_postgres_database(name)


def sqlite_database(folder: Path, template: Path | None = None, name: str = "idgate.db") -> TestDatabase:
    path = folder / name
    if template is not None:
        shutil.copyfile(template, path)
    return TestDatabase("sqlite", f"sqlite+aiosqlite:///{path}", path)
