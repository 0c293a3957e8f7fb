"""The decision log in the database: appending an entry, and reading entries, trees and checkpoints.

An entry is a decisions row: its format-1 record (domain/records.py, the truth) and copies of the
record's fields for queries (with `decision_results`, one row a policy result). Appending takes the
next position from the head row, stores the record's leaf hash in `log_nodes` (level 0) and folds it
into the tree's right edge (domain/merkle.Frontier), storing every perfect subtree it completes. Appends
happen inside the verification's own transaction. On SQLite that transaction's writes already take
turns; on PostgreSQL the head row's lock (`FOR UPDATE`, in the function of revision 0004) is the
serialisation point for every worker.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from idgate.adapters.crypto import BlindIndexer, FieldCipher
from idgate.domain import Clock, PolicyDecision, merkle, records
from idgate.domain.audit import (
    AuditAccess,
    Bucket,
    Checkpoint,
    ConsistencyProof,
    DecisionFilter,
    DecisionPage,
    InclusionProof,
    LogCheck,
    LoggedDecision,
    LogHead,
    Stats,
    VerifyReport,
    tree_finding,
)
from idgate.domain.ports import Progress

from .database import Database
from .errors import translated_errors
from .identities import IdentityCodec
from .keyring_check import VerifiedKeyring
from .runner import Transaction
from .tables import (
    AUDIT_ACCESS,
    DECISION_RESULTS,
    DECISIONS,
    LOG_CHECKPOINTS,
    LOG_HEAD,
    LOG_NODES,
    as_utc,
)

_NAMED = sqlite_dialect(paramstyle="named")


def _plain(statement: sa.ClauseElement, *, columns: list[str] | None = None) -> str:
    return str(statement.compile(dialect=_NAMED, column_keys=columns))


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One decision, ready to append: its record's canonical bytes, and the columns made from it."""

    decision: PolicyDecision
    identity_ref: str | None
    record: bytes

    @classmethod
    def of(cls, decision: PolicyDecision, identity_ref: str | None) -> LogEntry:
        return cls(decision, identity_ref, records.canonical(records.record_of(decision, identity_ref)))

    def columns(self) -> dict[str, object]:
        d = self.decision
        return {
            "decision_id": d.decision_id,
            "imp_uid": d.imp_uid,
            "subject": d.subject,
            "provider": d.provider,
            "verdict": d.verdict.value,
            "policy_set": d.policy_set,
            "decided_at": d.decided_at,
            "identity_ref": self.identity_ref,
            "channel": d.channel.value if d.channel else None,
            "caller": d.caller,
            "record": self.record,
        }

    def results(self, seq: int) -> list[dict[str, object]]:
        return [
            {
                "seq": seq,
                "position": n,
                "policy": r.policy,
                "version": r.version,
                "outcome": r.outcome.value,
                "code": r.code,
                "enforced": r.enforced,
            }
            for n, r in enumerate(self.decision.results)
        ]


async def append(sql: Transaction, entry: LogEntry) -> int:
    """Append inside the caller's write transaction; returns the entry's position (seq)."""
    head = await sql.first(_HEAD, {})
    if head is None:
        raise RuntimeError("the decision log has no head row; run `idgate db upgrade`")
    frontier = merkle.Frontier.from_bytes(head.size, bytes(head.frontier))
    leaf = merkle.leaf_hash(entry.record)
    made = frontier.append(leaf)
    seq = frontier.size
    await sql.execute(_INSERT_DECISION, {**entry.columns(), "seq": seq})
    if entry.decision.results:
        await sql.execute_many(_INSERT_RESULT, entry.results(seq))
    nodes = [(0, seq - 1, leaf), *made]
    await sql.execute_many(_INSERT_NODE, [{"level": lvl, "idx": i, "hash": h} for lvl, i, h in nodes])
    await sql.execute(_MOVE_HEAD, {"size": frontier.size, "frontier": frontier.to_bytes()})
    return seq


_HEAD = _plain(sa.select(LOG_HEAD.c.size, LOG_HEAD.c.frontier).where(LOG_HEAD.c.id == sa.literal_column("1")))
_INSERT_DECISION = _plain(sa.insert(DECISIONS), columns=[c.name for c in DECISIONS.columns])
_INSERT_RESULT = _plain(sa.insert(DECISION_RESULTS), columns=[c.name for c in DECISION_RESULTS.columns])
_INSERT_NODE = _plain(sa.insert(LOG_NODES), columns=["level", "idx", "hash"])
_MOVE_HEAD = _plain(
    sa.update(LOG_HEAD)
    .where(LOG_HEAD.c.id == sa.literal_column("1"))
    .values(size=sa.bindparam("size"), frontier=sa.bindparam("frontier"))
)
_RECORD_OF = _plain(
    sa.select(DECISIONS.c.record).where(DECISIONS.c.decision_id == sa.bindparam("decision_id"))
)


async def decision_by_id(sql: Transaction, decision_id: str) -> PolicyDecision | None:
    row: Any = await sql.first(_RECORD_OF, {"decision_id": decision_id})
    return None if row is None else records.decision_of(records.parse(bytes(row.record)))


_BATCH = 2000  # rows a round trip when exporting or verifying


class SqlDecisionLog:
    """The DecisionLog port on the SQL store's database. Auditors' queries go through SQLAlchemy
    (they are built per request); appends happen in the verification's transaction (above)."""

    def __init__(self, database: Database, keyring: VerifiedKeyring, clock: Clock) -> None:
        self._engine = database.engine
        self._dialect = database.dialect
        self._keyring = keyring
        self._codec = IdentityCodec(FieldCipher(keyring), BlindIndexer(keyring))
        self._clock = clock

    # ---- reading entries -------------------------------------------------------------------
    async def head(self) -> LogHead:
        async with translated_errors(), self._engine.connect() as connection:
            row = (await connection.execute(sa.select(LOG_HEAD.c.size, LOG_HEAD.c.frontier))).first()
        if row is None:
            return LogHead(0, merkle.EMPTY_ROOT)
        return LogHead(row.size, merkle.Frontier.from_bytes(row.size, bytes(row.frontier)).root())

    async def find(self, decision_id: str) -> LoggedDecision | None:
        query = sa.select(DECISIONS.c.seq, DECISIONS.c.record).where(DECISIONS.c.decision_id == decision_id)
        async with translated_errors(), self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return None if row is None else _logged(row)

    async def page(self, where: DecisionFilter, *, before: int | None, limit: int) -> DecisionPage:
        query = self._selected(where).order_by(DECISIONS.c.seq.desc()).limit(limit + 1)
        if before is not None:
            query = query.where(DECISIONS.c.seq < before)
        async with translated_errors(), self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        found = [_logged(row) for row in rows[:limit]]
        return DecisionPage(found, found[-1].seq if len(rows) > limit else None)

    async def of_person(self, ci: str, *, limit: int) -> Sequence[LoggedDecision]:
        await self._keyring.refresh()
        refs = self._codec.identity_refs("ci", ci)
        query = (
            sa.select(DECISIONS.c.seq, DECISIONS.c.record)
            .where(DECISIONS.c.identity_ref.in_(refs))
            .order_by(DECISIONS.c.seq.desc())
            .limit(limit)
        )
        async with translated_errors(), self._engine.connect() as connection:
            return [_logged(row) for row in (await connection.execute(query)).all()]

    async def export(self, where: DecisionFilter) -> AsyncIterator[LoggedDecision]:
        after = 0
        while True:
            query = (
                self._selected(where).where(DECISIONS.c.seq > after).order_by(DECISIONS.c.seq).limit(_BATCH)
            )
            async with translated_errors(), self._engine.connect() as connection:
                rows = (await connection.execute(query)).all()
            for row in rows:
                yield _logged(row)
            if len(rows) < _BATCH:
                return
            after = rows[-1].seq

    def _selected(self, where: DecisionFilter) -> sa.Select[Any]:
        d = DECISIONS.c
        query = sa.select(d.seq, d.record)
        for column, value in (
            (d.verdict, where.verdict),
            (d.subject, where.subject),
            (d.imp_uid, where.imp_uid),
            (d.provider, where.provider),
        ):
            if value is not None:
                query = query.where(column == value)
        if where.since is not None:
            query = query.where(d.decided_at >= where.since)
        if where.until is not None:
            query = query.where(d.decided_at < where.until)
        results = [
            (DECISION_RESULTS.c.policy, where.policy),
            (DECISION_RESULTS.c.outcome, where.outcome),
            (DECISION_RESULTS.c.code, where.code),
        ]
        if any(value is not None for _, value in results):
            matching = sa.select(DECISION_RESULTS.c.seq).where(DECISION_RESULTS.c.seq == d.seq)
            for column, value in results:
                if value is not None:
                    matching = matching.where(column == value)
            query = query.where(matching.exists())
        return query

    async def stats(self, where: DecisionFilter, bucket: Bucket) -> Stats:
        start = self._bucket_start(bucket)
        matching = self._selected(where).with_only_columns(DECISIONS.c.seq).scalar_subquery()
        verdicts = (
            sa.select(start.label("bucket"), DECISIONS.c.verdict, sa.func.count())
            .where(DECISIONS.c.seq.in_(matching))
            .group_by(start, DECISIONS.c.verdict)
            .order_by(start)
        )
        r = DECISION_RESULTS.c
        denials = (
            sa.select(start.label("bucket"), r.policy, r.code, sa.func.count())
            .select_from(DECISION_RESULTS.join(DECISIONS, DECISIONS.c.seq == r.seq))
            .where(DECISIONS.c.seq.in_(matching), r.outcome.in_(("deny", "error")), r.enforced.is_(True))
            .group_by(start, r.policy, r.code)
            .order_by(start)
        )
        async with translated_errors(), self._engine.connect() as connection:
            by_verdict = (await connection.execute(verdicts)).all()
            by_code = (await connection.execute(denials)).all()
        return Stats(
            bucket,
            [(as_utc(b), verdict, int(n)) for b, verdict, n in by_verdict],
            [(as_utc(b), policy, code, int(n)) for b, policy, code, n in by_code],
        )

    def _bucket_start(self, bucket: Bucket) -> sa.ColumnElement[Any]:
        if self._dialect == "postgresql":
            return sa.func.date_trunc(bucket.value, DECISIONS.c.decided_at)
        # SQLite keeps times as "YYYY-MM-DD HH:MM:SS.ffffff" (UTC): the bucket is a prefix of that.
        width = 13 if bucket is Bucket.HOUR else 10
        suffix = ":00:00" if bucket is Bucket.HOUR else " 00:00:00"
        return sa.func.substr(DECISIONS.c.decided_at, 1, width).concat(suffix)

    # ---- proofs ---------------------------------------------------------------------------
    async def inclusion_proof(self, seq: int, tree_size: int) -> InclusionProof:
        ranges = merkle.inclusion_ranges(seq - 1, tree_size)
        async with translated_errors(), self._engine.connect() as connection:
            record = (
                await connection.execute(sa.select(DECISIONS.c.record).where(DECISIONS.c.seq == seq))
            ).first()
            if record is None:
                raise ValueError("no decision has that seq")
            nodes = await self._nodes(connection, [*ranges, (0, tree_size)])
        lookup = nodes.__getitem__
        return InclusionProof(
            seq,
            tree_size,
            merkle.leaf_hash(bytes(record.record)),
            [merkle.range_hash(a, b, lambda level, index: lookup((level, index))) for a, b in ranges],
            merkle.range_hash(0, tree_size, lambda level, index: lookup((level, index))),
        )

    async def consistency_proof(self, old_size: int, new_size: int) -> ConsistencyProof:
        ranges = merkle.consistency_ranges(old_size, new_size)
        async with translated_errors(), self._engine.connect() as connection:
            nodes = await self._nodes(connection, [*ranges, (0, old_size), (0, new_size)])

        def hash_of(start: int, end: int) -> bytes:
            return merkle.range_hash(start, end, lambda level, index: nodes[(level, index)])

        return ConsistencyProof(
            old_size, new_size, hash_of(0, old_size), hash_of(0, new_size), [hash_of(a, b) for a, b in ranges]
        )

    async def _nodes(
        self, connection: Any, ranges: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        """Every stored perfect subtree the MTHs of `ranges` are made of, fetched in one query."""
        wanted = sorted({block for start, end in ranges for block in _blocks(start, end)})
        if not wanted:
            return {}
        n = LOG_NODES.c
        query = sa.select(n.level, n.idx, n.hash).where(sa.tuple_(n.level, n.idx).in_(wanted))
        found = {(row.level, row.idx): bytes(row.hash) for row in (await connection.execute(query)).all()}
        if len(found) != len(wanted):
            raise ValueError("the tree has no node for part of that range")
        return found

    # ---- checkpoints ------------------------------------------------------------------------
    async def checkpoints(self, *, limit: int) -> Sequence[Checkpoint]:
        c = LOG_CHECKPOINTS.c
        query = sa.select(c.size, c.root, c.signed_at, c.note).order_by(c.size.desc()).limit(limit)
        async with translated_errors(), self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [Checkpoint(r.size, bytes(r.root), as_utc(r.signed_at), r.note) for r in rows]

    async def checkpoint_at(self, size: int) -> Checkpoint | None:
        c = LOG_CHECKPOINTS.c
        query = sa.select(c.size, c.root, c.signed_at, c.note).where(c.size == size)
        async with translated_errors(), self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return None if row is None else Checkpoint(row.size, bytes(row.root), as_utc(row.signed_at), row.note)

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        values = {
            "size": checkpoint.size,
            "root": checkpoint.root,
            "signed_at": checkpoint.signed_at,
            "note": checkpoint.note,
        }
        insert = (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(LOG_CHECKPOINTS)
        async with translated_errors(), self._engine.begin() as connection:
            await connection.execute(insert.values(values).on_conflict_do_nothing())

    # ---- the auditors' own trail ----------------------------------------------------------
    async def record_access(self, actor: str, route: str, query: Mapping[str, str]) -> None:
        row = {
            "at": self._clock.now(),
            "actor": actor,
            "route": route,
            "query": json.dumps(dict(query), sort_keys=True),
        }
        async with translated_errors(), self._engine.begin() as connection:
            await connection.execute(sa.insert(AUDIT_ACCESS).values(row))

    async def accesses(self, *, limit: int) -> Sequence[AuditAccess]:
        a = AUDIT_ACCESS.c
        query = sa.select(a.at, a.actor, a.route, a.query).order_by(a.id.desc()).limit(limit)
        async with translated_errors(), self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [AuditAccess(as_utc(r.at), r.actor, r.route, json.loads(r.query)) for r in rows]

    # ---- verification ---------------------------------------------------------------------
    async def verify(
        self, signed: Callable[[Checkpoint], bool], progress: Progress | None = None
    ) -> VerifyReport:
        head = await self.head()
        async with translated_errors(), self._engine.connect() as connection:
            levels = await self._stored_levels(connection)
            leaves = levels.get(0, [])
            check = LogCheck(leaves)
            total = max(head.size, len(leaves))
            rows = 0
            previous: tuple[int, bytes] | None = None
            after = 0
            while True:
                batch = (
                    await connection.execute(
                        sa.select(DECISIONS.c.seq, DECISIONS.c.record)
                        .where(DECISIONS.c.seq > after)
                        .order_by(DECISIONS.c.seq)
                        .limit(_BATCH)
                    )
                ).all()
                for row in batch:
                    current = (row.seq, merkle.leaf_hash(bytes(row.record)))
                    if previous is not None:
                        check.feed(previous[0], previous[1], current[1])
                    previous = current
                rows += len(batch)
                if progress is not None:
                    progress(rows, total)
                if len(batch) < _BATCH:
                    break
                after = batch[-1].seq
            if previous is not None:
                check.feed(previous[0], previous[1], None)
            check.finish()
        checkpoints = await self.checkpoints(limit=1_000_000)
        finding = check.finding or tree_finding(leaves, levels, head, checkpoints, signed)
        return VerifyReport(head.size, rows, len(checkpoints), finding)

    async def _stored_levels(self, connection: Any) -> dict[int, list[bytes]]:
        """Every stored node, level by level, in order (a million entries: about 2 million hashes)."""
        levels: dict[int, list[bytes]] = {}
        result = await connection.stream(
            sa.select(LOG_NODES.c.level, LOG_NODES.c.hash).order_by(LOG_NODES.c.level, LOG_NODES.c.idx)
        )
        async for chunk in result.partitions(10_000):
            for level, node in chunk:
                levels.setdefault(level, []).append(bytes(node))
        return levels


def _blocks(start: int, end: int) -> list[tuple[int, int]]:
    """The stored perfect subtrees (level, index) that `merkle.range_hash(start, end)` reads."""
    size = end - start
    if size <= 0:
        return []
    if size & (size - 1) == 0 and start % size == 0:
        return [(size.bit_length() - 1, start // size)]
    k = 1 << ((size - 1).bit_length() - 1)
    return _blocks(start, start + k) + _blocks(start + k, end)


def _logged(row: Any) -> LoggedDecision:
    return LoggedDecision(row.seq, records.parse(bytes(row.record)))
