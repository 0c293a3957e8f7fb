"""Database failures become domain errors at the adapter's border; no SQLAlchemy exception escapes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import structlog
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from idgate.domain import StoreConflict, StoreUnavailable

log = structlog.get_logger("idgate.store")


@contextlib.asynccontextmanager
async def translated_errors() -> AsyncIterator[None]:
    """Wrap every database call. Callers that give a constraint a meaning (a consumed imp_uid, a bound
    person) catch IntegrityError inside; one that reaches this point was a concurrent change nobody
    expected, which retrying resolves. Every other database failure means the store is unavailable."""
    try:
        yield
    except IntegrityError as exc:
        log.warning("store_conflict", error_type=type(exc.orig).__name__)
        raise StoreConflict(
            "a concurrent change conflicted with this one and nothing was written; try again."
        ) from exc
    except (SQLAlchemyError, DBAPIError, OSError) as exc:
        # The driver's message can contain SQL parameters; only the type is logged.
        log.error("store_error", error_type=type(exc).__name__)
        raise StoreUnavailable("the database is unavailable; check [database] url and try again.") from exc
