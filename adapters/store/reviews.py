"""The ReviewCases port on the SQL store's database.

A case is opened by the verification's own write (sql.py, or the PostgreSQL function of revision
0006). Closing one is a transaction of its own: the case's row moves from `open` (a compare-and-swap,
so two reviewers, or a reviewer and the expiry, cannot both close it), its kept identity is cleared,
an allow binds the identity through the very function a verification's allow uses, and the closing
is appended to the decision log, last, as a verification's decision is. The kept identity is read
and decrypted, and an allow's identity sealed and indexed, before the transaction begins: an open
case's row never changes, so what was read is what the compare-and-swap finds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from idgate.adapters.crypto import BlindIndexer, FieldCipher
from idgate.domain import Clock, ReviewCaseClosed, records
from idgate.domain.cases import CasePage, CaseResolution, CaseState, ReviewCase

from .cases import KEPT, kept_certification
from .database import Database
from .decision_log import LogEntry, append
from .identities import IdentityCodec
from .keyring_check import VerifiedKeyring
from .runner import Transaction, plain_sql
from .sql import bind_identity, checkpoint_wal
from .tables import DECISIONS, REVIEW_CASES, as_utc

_CLOSED_MEANWHILE = "this review case is no longer open; a case is resolved once."


class SqlReviewCases:
    def __init__(self, database: Database, keyring: VerifiedKeyring, clock: Clock) -> None:
        self._database = database
        self._sql = database.runner
        self._keyring = keyring
        self._codec = IdentityCodec(FieldCipher(keyring), BlindIndexer(keyring))
        self._clock = clock

    async def find(self, decision_id: str) -> ReviewCase | None:
        async def read(sql: Transaction) -> Any:
            return await sql.first(_CASE, {"decision_id": decision_id})

        row = await self._sql.read(read)
        return None if row is None else _case(row)

    async def open_cases(self, *, opened_after: datetime, before: str | None, limit: int) -> CasePage:
        params: dict[str, object] = {"open": CaseState.OPEN.value, "after": opened_after, "limit": limit + 1}
        statement = _OPEN_NEWEST_FIRST
        if before is not None:
            statement, params["before"] = _OPEN_NEWEST_FIRST_BEFORE, before

        async def read(sql: Transaction) -> list[Any]:
            return await sql.all(statement, params)

        rows = await self._sql.read(read)
        found = [_case(row) for row in rows[:limit]]
        return CasePage(found, found[-1].decision_id if len(rows) > limit else None)

    async def opened_until(self, at: datetime, *, limit: int) -> Sequence[ReviewCase]:
        async def read(sql: Transaction) -> list[Any]:
            return await sql.all(_DUE, {"open": CaseState.OPEN.value, "at": at, "limit": limit})

        return [_case(row) for row in await self._sql.read(read)]

    async def close(self, resolution: CaseResolution) -> None:
        await self._keyring.refresh()  # an allow seals and indexes the identity; the ref is keyed too
        case = resolution.case

        async def read(sql: Transaction) -> Any:
            return await sql.first(_KEPT, {"decision_id": case.decision_id})

        row = await self._sql.read(read)
        if row is None or row.state != CaseState.OPEN.value:
            raise ReviewCaseClosed(_CLOSED_MEANWHILE)
        # The closing's entry carries the opening decision's pseudonym of the person, as its record has it.
        entry = LogEntry.of(resolution.entry, records.parse(bytes(row.record))["identity_ref"])
        identity: dict[str, Any] | None = None
        index_entries: list[dict[str, object]] = []
        if resolution.binds:
            certification = kept_certification(self._codec, row, case.decision)
            identity = self._codec.new_row(case.subject, certification, resolution.at)
            values = {"ci": certification.ci, "di": certification.di, "phone": certification.phone}
            index_entries = list(self._codec.index_entries(identity["id"], values))
        closed = {
            "decision_id": case.decision_id,
            "open": CaseState.OPEN.value,
            "state": resolution.closing.state.value,
            "resolved_at": resolution.at,
            "resolved_by": resolution.by,
            "note": resolution.note,
            "resolution_id": resolution.entry.decision_id,
        }
        postgres = self._database.dialect == "postgresql"

        async def close_case(sql: Transaction) -> None:
            if await sql.execute(_CLOSE, closed) != 1:  # closed by someone else since it was read
                raise ReviewCaseClosed(_CLOSED_MEANWHILE)
            if identity is not None:
                await bind_identity(sql, identity, index_entries)
            if postgres:
                # decision_log.append reads the head as SQLite's one writer may; on PostgreSQL the
                # row is locked first, as the verification's function locks it, so workers take turns.
                await sql.first(_LOCK_HEAD, {})
            await append(sql, entry)

        await self._sql.write(close_case)
        await checkpoint_wal(self._database)  # the discarded ciphertexts leave SQLite's -wal too


def _case(row: Any) -> ReviewCase:
    return ReviewCase(
        decision=records.decision_of(records.parse(bytes(row.record))),
        state=CaseState(row.state),
        resolved_at=None if row.resolved_at is None else as_utc(row.resolved_at),
        resolved_by=row.resolved_by,
    )


_c = REVIEW_CASES.c
_WITH_RECORD = REVIEW_CASES.join(DECISIONS, DECISIONS.c.decision_id == _c.decision_id)
_SUMMARY = (_c.decision_id, _c.state, _c.resolved_at, _c.resolved_by, DECISIONS.c.record)
_CASE = plain_sql(
    sa.select(*_SUMMARY).select_from(_WITH_RECORD).where(_c.decision_id == sa.bindparam("decision_id"))
)
_KEPT = plain_sql(
    sa.select(*REVIEW_CASES.c, DECISIONS.c.record)
    .select_from(_WITH_RECORD)
    .where(_c.decision_id == sa.bindparam("decision_id"))
)
# LIMIT written out: SQLite's compiler adds an OFFSET parameter of its own to a bound limit.
_LIMIT = " LIMIT :limit"
_OPEN = (
    sa.select(*_SUMMARY)
    .select_from(_WITH_RECORD)
    .where(_c.state == sa.bindparam("open"), _c.opened_at > sa.bindparam("after"))
    .order_by(_c.decision_id.desc())
)
_OPEN_NEWEST_FIRST = plain_sql(_OPEN) + _LIMIT
_OPEN_NEWEST_FIRST_BEFORE = plain_sql(_OPEN.where(_c.decision_id < sa.bindparam("before"))) + _LIMIT
_DUE = (
    plain_sql(
        sa.select(*_SUMMARY)
        .select_from(_WITH_RECORD)
        .where(_c.state == sa.bindparam("open"), _c.opened_at <= sa.bindparam("at"))
        .order_by(_c.opened_at)
    )
    + _LIMIT
)
_CLOSE = plain_sql(
    sa.update(REVIEW_CASES)
    .where(_c.decision_id == sa.bindparam("decision_id"), _c.state == sa.bindparam("open"))
    .values(
        state=sa.bindparam("state"),
        resolved_at=sa.bindparam("resolved_at"),
        resolved_by=sa.bindparam("resolved_by"),
        note=sa.bindparam("note"),
        resolution_id=sa.bindparam("resolution_id"),
        **{column: sa.null() for column in KEPT},
    )
)
# PostgreSQL only (SQLite's compiler leaves FOR UPDATE out, and SQLite has no row locks).
_LOCK_HEAD = "SELECT size FROM log_head WHERE id = 1 FOR UPDATE"
