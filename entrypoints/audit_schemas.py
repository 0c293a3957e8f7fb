"""What the decision log's answers look like, to auditors over HTTP and to `idgate decisions --json`.

One shape for both, so a script written against the API reads the CLI's output too.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import msgspec

from idgate.domain.audit import Checkpoint, ConsistencyProof, LoggedDecision, Stats, VerifyReport
from idgate.domain.auditing import ProvenDecision


class DecisionEntry(msgspec.Struct, kw_only=True):
    seq: int
    record: dict[str, Any]  # the format-1 record, exactly as the log hashes it (docs/audit-log.md)


class DecisionList(msgspec.Struct, kw_only=True):
    decisions: list[DecisionEntry]
    next_before: int | None  # pass as `before` for the next, older page; null on the last one


class Proof(msgspec.Struct, kw_only=True):
    tree_size: int
    leaf_index: int
    leaf_hash: str  # hex
    hashes: list[str]  # hex, from the leaf upwards (RFC 6962 audit path)
    root: str  # hex
    verifies: bool  # checked by idgate; check it yourself with the script in docs/audit-log.md


class ProvenEntry(msgspec.Struct, kw_only=True):
    seq: int
    record: dict[str, Any]
    proof: Proof
    checkpoint: str | None  # the signed note the proof leads to; null before a checkpoint covers it


class CheckpointOut(msgspec.Struct, kw_only=True):
    size: int
    root: str  # hex
    signed_at: datetime
    note: str  # the C2SP signed note


class CheckpointList(msgspec.Struct, kw_only=True):
    log_name: str
    public_key: str  # PEM, to verify the notes with
    checkpoints: list[CheckpointOut]


class ConsistencyOut(msgspec.Struct, kw_only=True):
    old_size: int
    new_size: int
    old_root: str
    new_root: str
    hashes: list[str]
    verifies: bool


class VerdictCount(msgspec.Struct, kw_only=True):
    start: datetime
    verdict: str
    count: int


class DenyCount(msgspec.Struct, kw_only=True):
    start: datetime
    policy: str
    code: str
    count: int


class StatsOut(msgspec.Struct, kw_only=True):
    bucket: str
    verdicts: list[VerdictCount]
    deny_codes: list[DenyCount]


class LogStatus(msgspec.Struct, kw_only=True):
    size: int
    root: str
    latest_checkpoint: CheckpointOut | None


class VerifyOut(msgspec.Struct, kw_only=True):
    ok: bool
    size: int
    rows: int
    checkpoints: int
    first_bad_seq: int | None
    kind: str | None  # edited, deleted, inserted, reordered, tree
    detail: str | None


def entry_out(found: LoggedDecision) -> DecisionEntry:
    return DecisionEntry(seq=found.seq, record=dict(found.record))


def checkpoint_out(checkpoint: Checkpoint) -> CheckpointOut:
    return CheckpointOut(
        size=checkpoint.size, root=checkpoint.root.hex(), signed_at=checkpoint.signed_at, note=checkpoint.note
    )


def proven_entry_out(found: ProvenDecision) -> ProvenEntry:
    proof = found.proof
    return ProvenEntry(
        seq=found.decision.seq,
        record=dict(found.decision.record),
        proof=Proof(
            tree_size=proof.tree_size,
            leaf_index=proof.seq - 1,
            leaf_hash=proof.leaf_hash.hex(),
            hashes=[h.hex() for h in proof.path],
            root=proof.root.hex(),
            verifies=proof.verifies(),
        ),
        checkpoint=found.checkpoint.note if found.checkpoint else None,
    )


def consistency_out(proof: ConsistencyProof) -> ConsistencyOut:
    return ConsistencyOut(
        old_size=proof.old_size,
        new_size=proof.new_size,
        old_root=proof.old_root.hex(),
        new_root=proof.new_root.hex(),
        hashes=[h.hex() for h in proof.path],
        verifies=proof.verifies(),
    )


def stats_out(found: Stats) -> StatsOut:
    return StatsOut(
        bucket=found.bucket.value,
        verdicts=[VerdictCount(start=s, verdict=v, count=n) for s, v, n in found.verdicts],
        deny_codes=[DenyCount(start=s, policy=p, code=c, count=n) for s, p, c, n in found.deny_codes],
    )


def verify_out(report: VerifyReport) -> VerifyOut:
    finding = report.finding
    return VerifyOut(
        ok=report.ok,
        size=report.size,
        rows=report.rows,
        checkpoints=report.checkpoints,
        first_bad_seq=finding.seq if finding else None,
        kind=finding.kind.value if finding else None,
        detail=finding.detail if finding else None,
    )


# ---- exports: the same bytes over HTTP and from `idgate decisions export` ----------------------------
async def jsonl_lines(entries: AsyncIterator[LoggedDecision]) -> AsyncIterator[bytes]:
    async for entry in entries:
        yield json.dumps({"seq": entry.seq, "record": entry.record}, ensure_ascii=False).encode() + b"\n"


CSV_COLUMNS = (
    "seq", "decision_id", "decided_at", "verdict", "subject", "imp_uid", "provider", "policy_set",
    "identity_ref", "channel", "caller", "results",
)  # fmt: skip


async def csv_chunks(entries: AsyncIterator[LoggedDecision]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    async for entry in entries:
        r = entry.record
        results = ";".join(f"{x['policy']}:{x['outcome']}:{x['code']}" for x in r["results"])
        writer.writerow([entry.seq, *(r[c] for c in CSV_COLUMNS[1:-1]), results])
        if buffer.tell() > 65536:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
