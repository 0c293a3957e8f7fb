"""Database failures become domain errors at the adapter's border; no driver or SQLAlchemy exception escapes."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator

import asyncpg
import structlog
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from idgate.domain import StoreConflict, StoreUnavailable

log = structlog.get_logger("idgate.store")


class ConstraintViolated(Exception):
    """A UNIQUE or PRIMARY KEY constraint refused a write, whichever the database and driver.

    `constraint` names it where the database says (PostgreSQL); SQLite's callers know from the statement.
    """

    def __init__(self, message: str, constraint: str = "") -> None:
        super().__init__(message)
        self.constraint = constraint


@contextlib.asynccontextmanager
async def translated_errors() -> AsyncIterator[None]:
    """Wrap every database call. Callers that give a constraint a meaning (a consumed imp_uid, a bound
    person) catch IntegrityError inside; one that reaches this point was a concurrent change nobody
    expected, which retrying resolves. Every other database failure means the store is unavailable."""
    try:
        yield
    except (
        IntegrityError,
        ConstraintViolated,
        sqlite3.IntegrityError,
        asyncpg.IntegrityConstraintViolationError,
    ) as exc:
        cause = exc.orig if isinstance(exc, IntegrityError) else exc.__cause__ or exc
        log.warning("store_conflict", error_type=type(cause).__name__)
        raise StoreConflict(
            "a concurrent change conflicted with this one and nothing was written; try again."
        ) from exc
    except (
        SQLAlchemyError,
        DBAPIError,
        sqlite3.Error,
        asyncpg.PostgresError,  # from the server: shutting down, too many connections, a lock timeout …
        asyncpg.InterfaceError,  # from the client: the connection is closed or broken
        asyncpg.exceptions.InternalClientError,  # asyncpg's pool, on a connection the server ended
        OSError,  # refused, reset, unreachable
        TimeoutError,  # no connection, or no answer within [database] connect or statement timeout
    ) as exc:
        # The driver's message can contain SQL parameters; only the type is logged.
        log.error("store_error", error_type=type(exc).__name__)
        raise StoreUnavailable("the database is unavailable; check [database] url and try again.") from exc
