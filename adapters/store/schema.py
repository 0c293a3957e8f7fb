"""The database schema's revision: migrations (Alembic, in migrations/) and the check `serve` makes.

`idgate db upgrade` (and `init`, `demo`) bring a database to the newest revision; everything else
refuses one that is not there, naming the command to run, so that several workers never race to
migrate and no code runs against tables it does not know. A database made by `create_all` before
idgate had migrations holds revision 0001 without saying so; it is recognised and stamped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from idgate.domain import SchemaOutOfDate

from .errors import translated_errors
from .postgres import lock_key

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported only by the functions that migrate (and `_known`): the check every command
# makes reads the version table itself, so `idgate decisions list` does not pay alembic's start-up.
MIGRATIONS = Path(__file__).parent / "migrations"
UNSTAMPED_FIRST = "0001"  # what create_all made before migrations existed
_REVISION_FILE = re.compile(r"v(\d{4})_\w+\.py")  # revision N lives in versions/vN_<what>.py


def _config(connection: sa.Connection | None = None) -> Config:
    from alembic.config import Config  # noqa: PLC0415 - see the note above MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision, from the files' names (a test holds it to what alembic computes)."""
    found = [m[1] for f in (MIGRATIONS / "versions").iterdir() if (m := _REVISION_FILE.fullmatch(f.name))]
    if not found:
        raise RuntimeError("idgate ships without migrations")
    return max(found)


async def current(engine: AsyncEngine) -> str | None:
    """The revision the database is at; None for a database with no idgate tables."""
    async with translated_errors(), engine.connect() as connection:
        return await connection.run_sync(_current)


def _current(connection: sa.Connection) -> str | None:
    inspector = sa.inspect(connection)
    revision = None
    if inspector.has_table("alembic_version"):
        revision = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    if revision is None and inspector.has_table("decisions"):
        return UNSTAMPED_FIRST
    return revision


async def upgrade(engine: AsyncEngine) -> tuple[str | None, str]:
    """Migrate to the newest revision in one transaction; returns (the revision before, the one now).

    On SQLite pass an engine made with `write_transactions` (BEGIN IMMEDIATE), so that the DDL runs in
    the transaction too; PostgreSQL's DDL is transactional anyway, and a lock keeps two processes that
    upgrade at once from both trying.
    """
    async with translated_errors(), engine.begin() as connection:
        return await connection.run_sync(upgrade_connection)


def upgrade_connection(connection: sa.Connection, target: str = "head") -> tuple[str | None, str]:
    """`upgrade` on an open connection, inside its transaction (any driver, sync); tests name an
    older `target` to make the databases earlier idgates made."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key("schema"))))
    from alembic import command  # noqa: PLC0415 - see the note above MIGRATIONS
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415

    before = _current(connection)
    config = _config(connection)
    _known(before)
    if before == UNSTAMPED_FIRST and MigrationContext.configure(connection).get_current_revision() is None:
        command.stamp(config, UNSTAMPED_FIRST)
    command.upgrade(config, target)
    return before, _current(connection) or target


def _known(revision: str | None) -> None:
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - see the note above MIGRATIONS
    from alembic.util.exc import CommandError  # noqa: PLC0415

    if revision is None:
        return
    try:
        ScriptDirectory.from_config(_config()).get_revision(revision)
    except CommandError:
        raise SchemaOutOfDate(
            f"the database is at schema revision {revision}, which this idgate does not know: a newer "
            "idgate migrated it. Run that version (or newer) of idgate."
        ) from None


async def require_current(engine: AsyncEngine) -> None:
    """Raise SchemaOutOfDate, naming the command to run, unless the database is at the newest revision."""
    found = await current(engine)
    wanted = head()
    if found == wanted:
        return
    if found is None:
        raise SchemaOutOfDate(
            "the database has no idgate tables yet; run `idgate db upgrade` (or `idgate init`) to create them."
        )
    _known(found)
    raise SchemaOutOfDate(
        f"the database is at schema revision {found} and this idgate needs {wanted}; back the database "
        "up, stop every idgate on it, run `idgate db upgrade`, then start idgate again."
    )
