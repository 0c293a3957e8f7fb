"""What a running server does by itself besides answering requests: purging what has expired."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import structlog

from idgate.domain import IdgateError

from .bootstrap import Container

log = structlog.get_logger("idgate.housekeeping")


@contextlib.asynccontextmanager
async def housekeeping(container: Container, purge_interval: float) -> AsyncIterator[None]:
    """Purge every `purge_interval` seconds while the server runs (never when it is 0)."""
    if purge_interval <= 0:
        yield
        return
    task = asyncio.create_task(_purge_forever(container, purge_interval))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _purge_forever(container: Container, interval: float) -> None:
    while True:
        # Spread out so that several workers do not all purge at the same moment; each purge is
        # idempotent, so two overlapping ones only share the work.
        await asyncio.sleep(interval * random.uniform(0.5, 1.5))  # noqa: S311 - timing, not a secret
        try:
            purged = await container.purge()
        except IdgateError as error:  # the database may be down; the next round tries again
            log.warning("purge_failed", code=error.code)
            continue
        log.info(
            "purged",
            prepared_requests=purged.prepared_requests,
            consumed_certifications=purged.consumed_certifications,
            request_counts=purged.request_counts,
        )
