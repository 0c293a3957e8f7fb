"""What a running server does by itself besides answering requests: purging what has expired,
signing checkpoints of the decision log, and closing the review cases nobody resolved in time."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import structlog

from idgate.domain import IdgateError

from .bootstrap import Container

log = log_line = structlog.get_logger("idgate.housekeeping")


@contextlib.asynccontextmanager
async def housekeeping(container: Container) -> AsyncIterator[None]:
    """Purge every [retention] purge_interval_seconds (never when 0), sign a checkpoint every
    [audit] checkpoint_every decisions or checkpoint_interval_seconds, and expire review cases about
    every EXPIRE_REVIEWS_EVERY seconds, while the server runs."""
    tasks = []
    purge_interval = container.settings.retention.purge_interval_seconds
    if purge_interval > 0:
        tasks.append(asyncio.create_task(_purge_forever(container, purge_interval)))
    if container.log is not None and container.signer is not None:
        tasks.append(asyncio.create_task(_checkpoint_forever(container)))
    if container.reviews is not None:
        tasks.append(asyncio.create_task(_expire_reviews_forever(container)))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
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


CHECK_EVERY = 1.0  # seconds between looks at the log's size


async def _checkpoint_forever(container: Container) -> None:
    """Several workers may each sign the same size: the store keeps one checkpoint a size."""
    audit = container.settings.audit
    log, _ = container.decision_log()
    started = container.clock.now()
    while True:
        await asyncio.sleep(CHECK_EVERY)
        try:
            head = await log.head()
            latest = await log.checkpoints(limit=1)
            covered = latest[0].size if latest else 0
            since = latest[0].signed_at if latest else started
            waited = (container.clock.now() - since).total_seconds()
            due = head.size - covered >= audit.checkpoint_every or waited >= audit.checkpoint_interval_seconds
            if head.size > covered and due:
                checkpoint = await container.checkpoint()
                if checkpoint is not None:
                    log_line.info("checkpoint_signed", size=checkpoint.size)
        except IdgateError as error:  # the next round tries again
            log_line.warning("checkpoint_failed", code=error.code)


EXPIRE_REVIEWS_EVERY = 60.0  # seconds between looks for review cases past [reviews] expire_after_seconds


async def _expire_reviews_forever(container: Container) -> None:
    """A case past its expiry can no longer be resolved in any case; this closes it (a log entry,
    the identity discarded). Several workers may look at once: each case is closed by one of them."""
    while True:
        jitter = random.uniform(0.5, 1.5)  # noqa: S311 - timing, not a secret
        await asyncio.sleep(EXPIRE_REVIEWS_EVERY * jitter)
        try:
            expired = await container.expire_reviews()
        except IdgateError as error:  # the next round tries again
            log_line.warning("review_expiry_failed", code=error.code)
            continue
        if expired:
            log_line.info("review_cases_expired", count=expired)
