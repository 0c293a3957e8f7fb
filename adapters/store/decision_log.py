"""The decision log in the database: appending an entry, and reading entries, trees and checkpoints.

An entry is a decisions row: its format-1 record (domain/records.py, the truth), the leaf hash of that
record, and copies of the record's fields for queries (with `decision_results`, one row a policy
result). Appending takes the next position from the head row and folds the leaf into the tree's right
edge (domain/merkle.Frontier), storing every perfect subtree it completes in `log_nodes`. Appends
happen inside the verification's own transaction. On SQLite that transaction's writes already take
turns; on PostgreSQL the head row's lock (`FOR UPDATE`, in the function of revision 0004) is the
serialisation point for every worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from idgate.domain import PolicyDecision, merkle, records

from .runner import Transaction
from .tables import DECISION_RESULTS, DECISIONS, LOG_HEAD, LOG_NODES

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
    await sql.execute(_INSERT_DECISION, {**entry.columns(), "seq": seq, "leaf_hash": leaf})
    if entry.decision.results:
        await sql.execute_many(_INSERT_RESULT, entry.results(seq))
    if made:
        await sql.execute_many(_INSERT_NODE, [{"level": lvl, "idx": i, "hash": h} for lvl, i, h in made])
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
