"""Database failures become the domain's StoreUnavailable at the adapter's border."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import structlog
from sqlalchemy.exc import DBAPIError, IntegrityError

from idgate.domain import StoreUnavailable

log = structlog.get_logger("idgate.store")


@contextlib.asynccontextmanager
async def translated_errors() -> AsyncIterator[None]:
    """Integrity errors pass through (callers give them meaning); other database errors are 503s."""
    try:
        yield
    except IntegrityError:
        raise
    except (DBAPIError, OSError) as exc:
        # The driver's message can contain SQL parameters; only the type is logged.
        log.error("store_error", error_type=type(exc).__name__)
        raise StoreUnavailable("the database is unavailable; check [database] url and try again.") from exc
