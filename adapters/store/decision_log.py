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

import asyncio
import collections
import contextlib
import functools
import json
import re
import sqlite3
import unicodedata
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from idgate.adapters.crypto import BlindIndexer, FieldCipher
from idgate.domain import Clock, PolicyDecision, merkle, records
from idgate.domain.audit import (
    COPIED_COLUMNS,
    COPIED_RESULT_FIELDS,
    AuditAccess,
    Bucket,
    Checkpoint,
    ConsistencyProof,
    DecisionFilter,
    DecisionPage,
    Finding,
    InclusionProof,
    LogCheck,
    LoggedDecision,
    LogHead,
    Stats,
    VerifyReport,
    copy_disagreement,
    edited_copy,
    tree_finding,
)
from idgate.domain.ports import Progress

from .database import Database
from .errors import translated_errors
from .identities import IdentityCodec
from .keyring_check import VerifiedKeyring
from .runner import Transaction, plain_sql
from .tables import (
    AUDIT_ACCESS,
    DECISION_RESULTS,
    DECISIONS,
    LOG_CHECKPOINTS,
    LOG_HEAD,
    LOG_NODES,
    as_utc,
)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One decision, ready to append: its record's canonical bytes, and the columns made from it,
    which hold its fields exactly as the record does (text NFC-normalised, as domain/records.py
    writes it): `verify` checks that every copy still agrees with its record."""

    decision: PolicyDecision
    identity_ref: str | None
    record: bytes

    @classmethod
    def of(cls, decision: PolicyDecision, identity_ref: str | None) -> LogEntry:
        return cls(decision, identity_ref, records.canonical(records.record_of(decision, identity_ref)))

    def columns(self) -> dict[str, object]:
        d = self.decision
        return {
            "decision_id": _nfc(d.decision_id),
            "imp_uid": _nfc(d.imp_uid),
            "subject": _nfc(d.subject),
            "provider": _nfc(d.provider),
            "verdict": d.verdict.value,
            "policy_set": _nfc(d.policy_set),
            "decided_at": d.decided_at,
            "identity_ref": _nfc(self.identity_ref),
            "channel": d.channel.value if d.channel else None,
            "caller": _nfc(d.caller),
            "record": self.record,
        }

    def results(self, seq: int) -> list[dict[str, object]]:
        return [
            {
                "seq": seq,
                "position": n,
                "policy": _nfc(r.policy),
                "version": _nfc(r.version),
                "outcome": r.outcome.value,
                "code": _nfc(r.code),
                "enforced": r.enforced,
            }
            for n, r in enumerate(self.decision.results)
        ]


def _nfc(text: str | None) -> str | None:
    return None if text is None else unicodedata.normalize("NFC", text)


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


_HEAD = plain_sql(
    sa.select(LOG_HEAD.c.size, LOG_HEAD.c.frontier).where(LOG_HEAD.c.id == sa.literal_column("1"))
)
_INSERT_DECISION = plain_sql(sa.insert(DECISIONS), columns=[c.name for c in DECISIONS.columns])
_INSERT_RESULT = plain_sql(sa.insert(DECISION_RESULTS), columns=[c.name for c in DECISION_RESULTS.columns])
_INSERT_NODE = plain_sql(sa.insert(LOG_NODES), columns=["level", "idx", "hash"])
_MOVE_HEAD = plain_sql(
    sa.update(LOG_HEAD)
    .where(LOG_HEAD.c.id == sa.literal_column("1"))
    .values(size=sa.bindparam("size"), frontier=sa.bindparam("frontier"))
)


# The closing of a review case is an entry of its own (channel `review`), not a verification.
_A_VERIFICATION = sa.or_(DECISIONS.c.channel.is_(None), DECISIONS.c.channel != sa.literal_column("'review'"))


@functools.lru_cache(maxsize=16)
def _count_of_refs(refs: int) -> str:
    """How many verifications since :since have one of :ref_0 … :ref_<refs - 1> (one a readable
    index key and kind: normally two)."""
    d = DECISIONS.c
    return plain_sql(
        sa.select(sa.func.count().label("n")).where(
            d.identity_ref.in_([sa.bindparam(f"ref_{n}") for n in range(refs)]),
            d.decided_at >= sa.bindparam("since"),
            _A_VERIFICATION,
        )
    )


_COUNT_OF_SUBJECT = plain_sql(
    sa.select(sa.func.count().label("n")).where(
        DECISIONS.c.subject == sa.bindparam("subject"),
        DECISIONS.c.decided_at >= sa.bindparam("since"),
        _A_VERIFICATION,
    )
)
_RECORD_OF = plain_sql(
    sa.select(DECISIONS.c.record).where(DECISIONS.c.decision_id == sa.bindparam("decision_id"))
)


async def decision_by_id(sql: Transaction, decision_id: str) -> PolicyDecision | None:
    row: Any = await sql.first(_RECORD_OF, {"decision_id": decision_id})
    return None if row is None else records.decision_of(records.parse(bytes(row.record)))


_BATCH = 2000  # rows a round trip when exporting or verifying


_NO_SEQ = (1, 0)


async def _window(connection: AsyncConnection, where: DecisionFilter) -> tuple[int, int] | None:
    """The first and last seq of the decisions within the filter's time range (an empty range when
    there are none), or None when the filter has no time range. Decisions are appended in about the
    order they were made, not exactly (two workers), so the bounds come from the times themselves,
    in one pass over their index entries; the time filter still applies within them."""
    if where.since is None and where.until is None:
        return None
    d = DECISIONS.c
    in_range = sa.select(d.seq)
    if where.since is not None:
        in_range = in_range.where(d.decided_at >= where.since)
    if where.until is not None:
        in_range = in_range.where(d.decided_at < where.until)
    if connection.dialect.name == "postgresql":
        # Materialised, or PostgreSQL answers min() and max() by walking the primary key from either
        # end until a row falls in the range: half the log, for a range in the middle. (SQLite scans
        # the range's index entries for both at once; materialising there only adds a copy.)
        seqs = in_range.cte("in_range").prefix_with("MATERIALIZED")
        query = sa.select(sa.func.min(seqs.c.seq), sa.func.max(seqs.c.seq))
    else:
        query = in_range.with_only_columns(sa.func.min(d.seq), sa.func.max(d.seq))
    first, last = (await connection.execute(query)).one()
    return _NO_SEQ if first is None else (first, last)


def _entries(seqs: sa.Select[Any], *, newest_first: bool) -> sa.Select[Any]:
    seq = DECISIONS.c.seq
    return (
        sa.select(seq, DECISIONS.c.record)
        .where(seq.in_(seqs.scalar_subquery()))
        .order_by(seq.desc() if newest_first else seq)
    )


class SqlDecisionLog:
    """The DecisionLog port on the SQL store's database. Auditors' queries go through SQLAlchemy
    (they are built per request); appends happen in the verification's transaction (above).

    Also VerificationHistory, which policies ask on every verification: its counts run on the hot
    path's runner, as plain SQL."""

    def __init__(self, database: Database, keyring: VerifiedKeyring, clock: Clock) -> None:
        self._engine = database.engine
        self._dialect = database.dialect
        self._sql = database.runner
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
        async with translated_errors(), self._engine.connect() as connection:
            window = await _window(connection, where)
            seqs = self._seqs(where, window, below=before, limit=limit + 1)
            rows = (await connection.execute(_entries(seqs, newest_first=True))).all()
        found = [_logged(row) for row in rows[:limit]]
        return DecisionPage(found, found[-1].seq if len(rows) > limit else None)

    # ---- VerificationHistory ----------------------------------------------------------------
    async def decisions_of_person(self, *, ci: str | None, di: str | None, since: datetime) -> int:
        """Decisions logged under any of the person's refs: by CI, and by DI for the certifications
        that carried no CI (those are logged by DI), under every readable index key. Each decision has
        one ref, so none is counted twice."""
        if not ci and not di:
            return 0
        await self._keyring.refresh()
        refs = [
            ref
            for kind, value in (("ci", ci), ("di", di))
            if value
            for ref in self._codec.identity_refs(kind, value)
        ]
        params: dict[str, object] = {f"ref_{n}": ref for n, ref in enumerate(refs)}
        return await self._count(_count_of_refs(len(refs)), {**params, "since": since})

    async def decisions_of_subject(self, subject: str, *, since: datetime) -> int:
        return await self._count(_COUNT_OF_SUBJECT, {"subject": _nfc(subject), "since": since})

    async def _count(self, statement: str, params: Mapping[str, object]) -> int:
        async def count(sql: Transaction) -> int:
            row = await sql.first(statement, params)
            return 0 if row is None else int(row.n)

        return await self._sql.read(count)

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
        async with translated_errors(), self._engine.connect() as connection:
            window = await _window(connection, where)
        after = 0
        while True:
            seqs = self._seqs(where, window, above=after, limit=_BATCH)
            async with translated_errors(), self._engine.connect() as connection:
                rows = (await connection.execute(_entries(seqs, newest_first=False))).all()
            for row in rows:
                yield _logged(row)
            if len(rows) < _BATCH:
                return
            after = rows[-1].seq

    # A page is found in two steps: the matching seqs first, read from indexes alone, then the records
    # of those few. Sorting or scanning with the records attached (850 bytes each) is what made a
    # day's page take 0.2 s, and a rare policy code, probed decision by decision, over 10 s at 1M.
    # A time range is first turned into the seqs it spans (`_window`), so that every other filter's
    # index, which ends in seq, can start and stop there.
    def _seqs(
        self,
        where: DecisionFilter,
        window: tuple[int, int] | None = None,
        *,
        below: int | None = None,
        above: int | None = None,
        limit: int | None,
    ) -> sa.Select[Any]:
        """The seqs of matching decisions, newest first (oldest first when `above` is given), within
        `window` (first and last seq) when given."""
        d, r = DECISIONS.c, DECISION_RESULTS.c
        on_decisions = [
            column == _nfc(value)  # the columns hold NFC text, as the records do
            for column, value in (
                (d.verdict, where.verdict),
                (d.subject, where.subject),
                (d.imp_uid, where.imp_uid),
                (d.provider, where.provider),
            )
            if value is not None
        ]
        if where.since is not None:
            on_decisions.append(d.decided_at >= where.since)
        if where.until is not None:
            on_decisions.append(d.decided_at < where.until)
        on_results = [
            column == _nfc(value)
            for column, value in ((r.policy, where.policy), (r.outcome, where.outcome), (r.code, where.code))
            if value is not None
        ]
        if on_results:
            # From the results' own indexes, in seq order; one decision may match in several results.
            seq = r.seq
            query = sa.select(seq).distinct().where(*on_results)
            if on_decisions:
                query = query.join_from(DECISION_RESULTS, DECISIONS, d.seq == r.seq).where(*on_decisions)
        else:
            seq = d.seq
            query = sa.select(seq).where(*on_decisions)
        if window is not None:
            query = query.where(seq.between(*window))
        if below is not None:
            query = query.where(seq < below)
        if above is not None:
            query = query.where(seq > above)
        query = query.order_by(seq if above is not None else seq.desc())
        return query if limit is None else query.limit(limit)

    async def stats(self, where: DecisionFilter, bucket: Bucket) -> Stats:
        start = self._bucket_start(bucket)
        matching = self._seqs(where, limit=None).scalar_subquery()
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
    # Through the driver: each needs one record and a few dozen nodes, point lookups in their primary
    # keys. (Through SQLAlchemy, `(level, idx) IN (…)` made SQLite read every node: 0.4 s at 1M.)
    async def inclusion_proof(self, seq: int, tree_size: int) -> InclusionProof:
        ranges = merkle.inclusion_ranges(seq - 1, tree_size)
        async with translated_errors(), self._engine.connect() as connection:
            driver = await _Snapshot.plain(connection, self._dialect)
            record = await driver.value(_RECORD_AT, seq)
            if record is None:
                raise ValueError("no decision has that seq")
            nodes = await _nodes(driver, [*ranges, (0, tree_size)])
        lookup = nodes.__getitem__
        return InclusionProof(
            seq,
            tree_size,
            merkle.leaf_hash(bytes(record)),
            [merkle.range_hash(a, b, lambda level, index: lookup((level, index))) for a, b in ranges],
            merkle.range_hash(0, tree_size, lambda level, index: lookup((level, index))),
        )

    async def consistency_proof(self, old_size: int, new_size: int) -> ConsistencyProof:
        ranges = merkle.consistency_ranges(old_size, new_size)
        async with translated_errors(), self._engine.connect() as connection:
            driver = await _Snapshot.plain(connection, self._dialect)
            nodes = await _nodes(driver, [*ranges, (0, old_size), (0, new_size)])

        def hash_of(start: int, end: int) -> bytes:
            return merkle.range_hash(start, end, lambda level, index: nodes[(level, index)])

        return ConsistencyProof(
            old_size, new_size, hash_of(0, old_size), hash_of(0, new_size), [hash_of(a, b) for a, b in ranges]
        )

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
        """Everything is read in one snapshot (appends made meanwhile are simply not in it), through
        the driver itself: rows as aiosqlite or asyncpg make them, not SQLAlchemy's. The rows are hashed
        while the stored tree is read (on PostgreSQL on a connection of its own, sharing the snapshot),
        and the columns copied from the records are checked in the same pass, on another connection
        whose queries run while this one hashes."""
        async with translated_errors(), contextlib.AsyncExitStack() as stack:

            async def snapshot_of(like: _Snapshot | None = None) -> _Snapshot:
                connection = await stack.enter_async_context(self._engine.connect())
                return await stack.enter_async_context(_Snapshot.of(connection, self._dialect, like=like))

            snapshot = await snapshot_of()
            copies = await snapshot_of(like=snapshot)
            # SQLite cannot share a snapshot between connections: its tree is read on the rows' own,
            # between their batches (aiosqlite's thread does both while this one hashes).
            tree = snapshot if self._dialect == "sqlite" else await snapshot_of(like=snapshot)
            head = await snapshot.head()
            levels_read = asyncio.ensure_future(self._stored_levels(tree))
            try:
                rows, runs, copied = await _RowsCheck(snapshot, copies).run(progress, head.size)
                levels = await levels_read
            finally:
                await _cancelled(levels_read)
            checkpoints = await snapshot.checkpoints()
        leaves = levels.get(0, merkle.Hashes())
        check = LogCheck(leaves)
        for n, (first, hashed) in enumerate(runs):
            check.feed_run(first, hashed, runs[n + 1][1][0] if n + 1 < len(runs) else None)
        check.finish()
        finding = check.finding or tree_finding(leaves, levels, head, checkpoints, signed)
        if copied is not None and (finding is None or copied.seq < finding.seq):
            finding = copied
        return VerifyReport(head.size, rows, len(checkpoints), finding)

    async def _stored_levels(self, snapshot: _Snapshot) -> dict[int, Sequence[bytes]]:
        """Every stored node, level by level, in idx order; a level as `merkle.Hashes` (a million
        entries: about 64 MB), read a few hundred thousand nodes a query, concatenated by the database."""
        levels: dict[int, Sequence[bytes]] = {}
        level = await snapshot.value("SELECT min(level) FROM log_nodes")
        while level is not None:
            chunks, after, exact = [], _SMALLEST, True
            while True:
                data, count, length, last = await snapshot.first(_NODES_CHUNK, level, after, _NODE_CHUNK)
                if not count:
                    break
                if length != count * merkle.HASH_SIZE:  # a stored hash of another size: read one by one
                    exact = False
                    break
                chunks.append(bytes(data))
                if count < _NODE_CHUNK:
                    break
                after = last + 1
            if exact:
                levels[level] = merkle.Hashes(b"".join(chunks))
            else:
                levels[level] = [bytes(h) for (h,) in await snapshot.all(_NODES_OF_LEVEL, level)]
            level = await snapshot.value(_NEXT_LEVEL, level)
        return levels


_VERIFY_BATCH = 10_000  # decision rows a fetch when verifying: about 10 MB of records
_NODE_CHUNK = 1 << 18  # stored nodes a query (8 MiB of hashes)
_SMALLEST = -(1 << 63)
_ROWS_FROM = "SELECT seq, record FROM decisions WHERE seq >= ? ORDER BY seq LIMIT ?"
_NEXT_LEVEL = "SELECT min(level) FROM log_nodes WHERE level > ?"
_NODES_OF_LEVEL = "SELECT hash FROM log_nodes WHERE level = ? ORDER BY idx"
# One chunk of a level: its hashes end to end (in idx order), how many, their total length, the last idx.
_NODES_CHUNK = {
    "sqlite": "SELECT CAST(group_concat(hash, '') AS BLOB), count(*), sum(length(CAST(hash AS BLOB))), "
    "max(idx) FROM (SELECT idx, hash FROM log_nodes WHERE level = ? AND idx >= ? ORDER BY idx LIMIT ?)",
    "postgresql": "SELECT string_agg(hash, ''::bytea ORDER BY idx), count(*), sum(length(hash)), max(idx) "
    "FROM (SELECT idx, hash FROM log_nodes WHERE level = ? AND idx >= ? ORDER BY idx LIMIT ?) AS chunk",
}


class _CopiedResult(msgspec.Struct, gc=False):
    """What a decision_results row copies of one result, as the record's own JSON text."""

    policy: msgspec.Raw
    version: msgspec.Raw
    outcome: msgspec.Raw
    code: msgspec.Raw
    enforced: bool


class _CopiedFields(msgspec.Struct, gc=False, omit_defaults=True):
    """The fields of a format-1 record that columns copy, each as the record's own JSON text
    (msgspec.Raw); the rest of the record is skipped when decoding. Its results are taken out before
    it is encoded again, so that it encodes as the decisions columns alone (an empty list is left
    out)."""

    decision_id: msgspec.Raw
    decided_at: msgspec.Raw
    verdict: msgspec.Raw
    policy_set: msgspec.Raw
    subject: msgspec.Raw
    imp_uid: msgspec.Raw
    provider: msgspec.Raw
    identity_ref: msgspec.Raw
    channel: msgspec.Raw
    caller: msgspec.Raw
    results: list[_CopiedResult] = []  # msgspec makes a new list for each


_COPIED = msgspec.json.Decoder(list[_CopiedFields])
_JSON = msgspec.json.Encoder()
_RESULT_FIELDS = ("seq", "position", *COPIED_RESULT_FIELDS)
_TIME_TEXT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")  # SQLite's: UTC, microseconds
_AS_STORED = {  # decided_at as text in SQLite's form, for the row-by-row comparison
    "sqlite": "decided_at",
    "postgresql": "to_char(decided_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
}


def _copies_sql(dialect: str) -> tuple[str, str, str, str]:
    """For a seq range, the fast check's two queries: the decisions' copied columns as one JSON array
    of objects (fields in the order of `_CopiedFields`), and the result rows, in (seq, position) order,
    as a JSON array of objects (fields in the order of `_CopiedResult`) with their seqs and positions
    as two arrays; each value as the JSON the records hold. Then the same columns and rows as they
    are, to name what disagrees. Built from the constant column names of this module only."""
    fields, result_fields = _CopiedFields.__struct_fields__[:-1], _CopiedResult.__struct_fields__
    in_range = "WHERE seq >= ? AND seq <= ?"
    if dialect == "postgresql":  # written out: json_build_object puts spaces around ':' and after ','
        as_json = {
            "decided_at": "to_json(to_char(decided_at AT TIME ZONE 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\'))::text',
            "enforced": "CASE WHEN enforced THEN 'true' ELSE 'false' END",
        }

        def pg_object(names: tuple[str, ...]) -> str:
            members = (
                f"'\"{n}\":' || {as_json.get(n, f'coalesce(to_json({n})::text, {chr(39)}null{chr(39)})')}"
                for n in names
            )
            return "'{' || " + " || ',' || ".join(members) + " || '}'"

        def pg_array(value: str, order: str) -> str:
            return (
                f"convert_to('[' || coalesce(string_agg({value}, ',' ORDER BY {order}), '') || ']', 'UTF8')"
            )

        order = "seq, position"
        decisions = f"SELECT count(*), {pg_array(pg_object(fields), 'seq')} FROM decisions {in_range}"  # noqa: S608
        copied = [
            pg_array(pg_object(result_fields), order),
            *(pg_array(f"{c}::text", order) for c in ("seq", "position")),
        ]
        results = f"SELECT {', '.join(copied)} FROM decision_results {in_range}"  # noqa: S608
    else:  # ordered in a subquery: SQLite aggregates the rows in the order they come
        as_sql = {
            "decided_at": "CASE WHEN length(decided_at) = 26 AND substr(decided_at, 11, 1) = ' ' "
            "THEN substr(decided_at, 1, 10) || 'T' || substr(decided_at, 12) || 'Z' END",
            "enforced": "CASE enforced WHEN 1 THEN json('true') WHEN 0 THEN json('false') END",
        }

        def sqlite_object(names: tuple[str, ...]) -> str:
            return "json_object(" + ", ".join(f"'{n}', {as_sql.get(n, n)}" for n in names) + ")"

        def sqlite_array(value: str) -> str:
            return f"CAST('[' || coalesce(group_concat({value}, ','), '') || ']' AS BLOB)"

        # The subqueries select what is aggregated and nothing else (with *, SQLite would copy every
        # row's record into the subquery's result too).
        decisions = f"SELECT count(*), {sqlite_array('one')} FROM (SELECT {sqlite_object(fields)} AS one FROM decisions {in_range} ORDER BY seq)"  # noqa: S608
        copied = [sqlite_array("one"), sqlite_array("seq"), sqlite_array("position")]
        results = f"SELECT {', '.join(copied)} FROM (SELECT seq, position, {sqlite_object(result_fields)} AS one FROM decision_results {in_range} ORDER BY seq, position)"  # noqa: S608
    stored = [_AS_STORED[dialect] if c == "decided_at" else c for c in COPIED_COLUMNS]
    return (
        decisions,
        results,
        f"SELECT seq, {', '.join(stored)} FROM decisions {in_range} ORDER BY seq",  # noqa: S608 - constant names
        f"SELECT {', '.join(_RESULT_FIELDS)} FROM decision_results {in_range} ORDER BY seq, position",  # noqa: S608
    )


_COPIES_SQL = {dialect: _copies_sql(dialect) for dialect in ("sqlite", "postgresql")}


class _RowsCheck:
    """Every decision row in seq order: its record hashed (for LogCheck, once the stored leaves are
    read), and its copied columns held against its record.

    The rows come in batches, hashed as runs of consecutive seqs (they are ascending and unique, so
    consecutive when the first and last span the batch). For the copies, the second connection writes
    each batch's columns into JSON, asked for a few batches ahead so that the database works while
    this thread hashes; the records' own fields, decoded by msgspec, are written the same way, and
    the two compare with one `==`. Only a batch that disagrees is read again row by row, to name the
    first seq and column that disagree."""

    AHEAD = 3  # batches whose copies are asked for before their turn
    CHECK_COPIES = True  # benchmarks/decision_log.py turns it off to measure what the check costs

    def __init__(self, snapshot: _Snapshot, copies: _Snapshot) -> None:
        self._snapshot = snapshot
        self._copies = copies
        self._sql = _COPIES_SQL[copies.dialect]
        self.copied: Finding | None = None
        self._asked: dict[tuple[int, int], asyncio.Future[Any]] = {}
        self._waiting: collections.deque[tuple[list[Any], int, int, asyncio.Future[Any] | None]] = (
            collections.deque()
        )

    async def run(
        self, progress: Progress | None, total: int
    ) -> tuple[int, list[tuple[int, merkle.Hashes]], Finding | None]:
        """(rows read, their leaf hashes as runs of consecutive seqs, the first copy that disagrees)."""
        rows = 0
        runs: list[tuple[int, merkle.Hashes]] = []
        try:
            async for batch in self._snapshot.rows_in_order(_VERIFY_BATCH):
                first, last = batch[0][0], batch[-1][0]
                consecutive = last - first + 1 == len(batch)
                rows += len(batch)
                if self.copied is None and self.CHECK_COPIES:
                    projection = None  # a batch with gaps is compared row by row
                    if consecutive:
                        self._ask(first, last)
                        projection = self._asked.pop((first, last))
                    for ahead in range(self.AHEAD if consecutive else 0):
                        self._ask(last + 1 + ahead * _VERIFY_BATCH, last + (ahead + 1) * _VERIFY_BATCH)
                    self._waiting.append((batch, first, last, projection))
                hashed = merkle.leaf_hashes([row[1] for row in batch])
                if consecutive:
                    runs.append((first, hashed))
                else:
                    runs += [(row[0], hashed[n : n + 1]) for n, row in enumerate(batch)]
                await self._check_waiting(self.AHEAD)
                if progress is not None:
                    progress(rows, total)
            await self._check_waiting(0)
        finally:
            for future in [*self._asked.values(), *(w[3] for w in self._waiting if w[3] is not None)]:
                await _cancelled(future)
        return rows, runs, self.copied

    def _ask(self, first: int, last: int) -> None:
        async def both() -> tuple[Any, Any]:
            decisions = await self._copies.first(self._sql[0], first, last)
            return decisions, await self._copies.first(self._sql[1], first, last)

        if (first, last) not in self._asked:
            self._asked[first, last] = asyncio.ensure_future(both())

    async def _check_waiting(self, keep: int) -> None:
        """Check the batches whose copies have come, and the oldest ones until `keep` are left."""
        waiting = self._waiting
        while waiting and (len(waiting) > keep or waiting[0][3] is None or waiting[0][3].done()):
            batch, first, last, projection = waiting.popleft()
            if self.copied is None:
                await self._check_copies(batch, first, last, projection)
            elif projection is not None:
                await _cancelled(projection)

    async def _check_copies(
        self, batch: list[Any], first: int, last: int, projection: asyncio.Future[Any] | None
    ) -> None:
        if projection is not None:
            try:
                if _copies_agree(
                    b"[" + b",".join([row[1] for row in batch]) + b"]", first, *await projection
                ):
                    return
            except (msgspec.DecodeError, msgspec.ValidationError, sqlite3.Error):
                pass  # not a record; or a column SQLite cannot write as JSON (a BLOB): row by row
            finally:
                await _cancelled(projection)
        self.copied = await self._first_disagreement(batch, first, last)

    async def _first_disagreement(self, batch: list[Any], first: int, last: int) -> Finding | None:
        _, _, decisions, results = self._sql
        stored = {row[0]: row for row in await self._copies.all(decisions, first, last)}
        result_rows: dict[int, list[dict[str, object]]] = {}
        for row in await self._copies.all(results, first, last):
            values = dict(zip(_RESULT_FIELDS, row, strict=True))
            if type(values["enforced"]) is int and values["enforced"] in (0, 1):  # SQLite's booleans
                values["enforced"] = bool(values["enforced"])
            result_rows.setdefault(row[0], []).append(values)
        for seq, data in batch:
            columns = stored.get(seq)
            try:
                record = records.parse(bytes(data))
            except ValueError:  # not a record at all: LogCheck names it
                continue
            if columns is None:
                continue
            copied = dict(zip(COPIED_COLUMNS, columns[1:], strict=True))
            when = copied["decided_at"]
            if isinstance(when, str) and _TIME_TEXT.fullmatch(when):
                copied["decided_at"] = f"{when[:10]}T{when[11:]}Z"
            column = copy_disagreement(record, copied, result_rows.get(seq, []))
            if column is not None:
                return edited_copy(seq, column)
        return None


def _copies_agree(records: bytes, first: int, decisions: Any, results: Any) -> bool:
    """The batch's columns as the database wrote them into JSON (`_copies_sql`), against the same JSON
    made of its records' own fields (decoded by msgspec, which keeps them as the record's text): a
    few bytes comparisons. Text the two escape differently (control characters) only sends the batch
    to the row-by-row check. `records` is the batch's records as one JSON array."""
    count, copied = decisions
    copied_results, copied_seqs, copied_positions = results
    decoded = _COPIED.decode(records)
    if count != len(decoded):
        return False
    flat: list[_CopiedResult] = []
    seqs: list[int] = []
    positions: list[int] = []
    for seq, fields in enumerate(decoded, first):
        if of_this := fields.results:
            flat += of_this
            seqs += [seq] * len(of_this)
            positions += range(len(of_this))
            fields.results = []
    return bool(
        copied == _JSON.encode(decoded)
        and copied_results == _JSON.encode(flat)
        and copied_seqs == _JSON.encode(seqs)
        and copied_positions == _JSON.encode(positions)
    )


async def _cancelled(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.cancel()
    with contextlib.suppress(BaseException):
        await future


class _Snapshot:
    """One consistent view of the log through the database driver itself (aiosqlite or asyncpg):
    on SQLite one read transaction (WAL: writers carry on), on PostgreSQL one REPEATABLE READ, READ
    ONLY transaction, which a second one can share (`like`). Statements use `?` placeholders."""

    def __init__(self, driver: Any, dialect: str) -> None:
        self._driver = driver
        self.dialect = dialect
        self.exported: str | None = None
        self._turns = asyncio.Lock()  # asyncpg runs one statement at a time (aiosqlite queues them)

    @classmethod
    async def plain(cls, connection: Any, dialect: str) -> _Snapshot:
        """The connection's driver, its statements outside any transaction of this class's own."""
        raw = await connection.get_raw_connection()
        return cls(raw.driver_connection, dialect)

    @classmethod
    @contextlib.asynccontextmanager
    async def of(
        cls, connection: Any, dialect: str, *, like: _Snapshot | None = None
    ) -> AsyncIterator[_Snapshot]:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        if dialect == "postgresql":
            transaction = driver.transaction(isolation="repeatable_read", readonly=True)
            await transaction.start()
            try:
                made = cls(driver, dialect)
                if like is not None:  # the very snapshot of the other transaction
                    if like.exported is None:
                        like.exported = await like.value("SELECT pg_export_snapshot()")
                    await driver.execute(f"SET TRANSACTION SNAPSHOT '{like.exported}'")
                yield made
            finally:
                await transaction.rollback()
            return
        await driver.execute_fetchall("BEGIN", ())  # deferred: the first read fixes the snapshot
        try:
            yield cls(driver, dialect)
        finally:
            await driver.rollback()

    def _sql(self, sql: str | Mapping[str, str]) -> str:
        text = sql if isinstance(sql, str) else sql[self.dialect]
        if self.dialect != "postgresql":
            return text
        parts = text.split("?")
        return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))

    async def all(self, sql: str | Mapping[str, str], *params: object) -> list[Any]:
        if self.dialect == "postgresql":
            async with self._turns:
                return list(await self._driver.fetch(self._sql(sql), *params))
        return list(await self._driver.execute_fetchall(self._sql(sql), params))

    async def first(self, sql: str | Mapping[str, str], *params: object) -> Any:
        found = await self.all(sql, *params)
        return found[0] if found else None

    async def value(self, sql: str | Mapping[str, str], *params: object) -> Any:
        row = await self.first(sql, *params)
        return None if row is None else row[0]

    async def rows_in_order(self, size: int) -> AsyncIterator[list[Any]]:
        """Every decision row (seq, record) in seq order, `size` at a time. The next batch is asked
        for before this one is handed over, so the database (and aiosqlite's thread) work while the
        caller hashes. SQLite reads them with one statement; PostgreSQL a batch a query, from the
        last seq on (faster here than a cursor's FETCH)."""
        if self.dialect == "postgresql":

            async def fetch(after: int) -> list[Any]:
                return await self.all(_ROWS_FROM, after, size)

        else:
            cursor = await self._driver.execute("SELECT seq, record FROM decisions ORDER BY seq")

            async def fetch(after: int) -> list[Any]:
                return list(await cursor.fetchmany(size))

        pending = asyncio.ensure_future(fetch(_SMALLEST))
        try:
            while True:
                rows = await pending
                if not rows:
                    return
                pending = asyncio.ensure_future(fetch(rows[-1][0] + 1))
                await asyncio.sleep(0)  # the next fetch starts
                yield rows
        finally:
            await _cancelled(pending)
            if self.dialect != "postgresql":
                await cursor.close()

    async def head(self) -> LogHead:
        row = await self.first("SELECT size, frontier FROM log_head WHERE id = 1")
        if row is None:
            return LogHead(0, merkle.EMPTY_ROOT)
        return LogHead(row[0], merkle.Frontier.from_bytes(row[0], bytes(row[1])).root())

    async def checkpoints(self) -> list[Checkpoint]:
        rows = await self.all("SELECT size, root, signed_at, note FROM log_checkpoints ORDER BY size")
        return [Checkpoint(r[0], bytes(r[1]), as_utc(r[2]), r[3]) for r in rows]


_RECORD_AT = "SELECT record FROM decisions WHERE seq = ?"


async def _nodes(driver: _Snapshot, ranges: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Every stored perfect subtree the MTHs of `ranges` are made of, fetched in one query: the
    wanted (level, idx) pairs as a VALUES list joined to the nodes' primary key."""
    wanted = sorted({block for start, end in ranges for block in _blocks(start, end)})
    if not wanted:
        return {}
    pairs = ", ".join(["(CAST(? AS INTEGER), CAST(? AS BIGINT))"] * len(wanted))
    query = (
        f"WITH wanted (level, idx) AS (VALUES {pairs}) "  # noqa: S608 - placeholders only
        "SELECT n.level, n.idx, n.hash FROM wanted JOIN log_nodes n ON n.level = wanted.level AND n.idx = wanted.idx"
    )
    rows = await driver.all(query, *(value for pair in wanted for value in pair))
    found = {(row[0], row[1]): bytes(row[2]) for row in rows}
    if len(found) != len(wanted):
        raise ValueError("the tree has no node for part of that range")
    return found


def _blocks(start: int, end: int) -> list[tuple[int, int]]:
    """The stored perfect subtrees (level, index) that `merkle.range_hash(start, end)` reads."""
    size = end - start
    if size <= 0:
        return []
    if size & (size - 1) == 0 and start % size == 0:
        return [(size.bit_length() - 1, start // size)]
    k = 1 << ((size - 1).bit_length() - 1)
    return _blocks(start, start + k) + _blocks(start + k, end)


_ANY_JSON = msgspec.json.Decoder()


def _parsed(data: bytes) -> dict[str, Any]:
    """records.parse, with msgspec's decoder (the same values as json.loads, at a fraction of its CPU:
    a page of 50 records took 1 ms of it)."""
    try:
        found = _ANY_JSON.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError("not a format-1 decision record") from exc
    if not isinstance(found, dict) or found.get("format") != records.FORMAT:
        raise ValueError("not a format-1 decision record")
    return found


def _logged(row: Any) -> LoggedDecision:
    return LoggedDecision(row.seq, _parsed(bytes(row.record)))
