"""The decision log over HTTP, for auditors (bearer tokens with role `auditor`), and the auditor page.

Thin like the rest of the HTTP layer: parse the filters, authorise, call one use case of
`domain/auditing.py` (which records the question in the access log), and shape the answer. A CI to
search for travels in a POST body, never in a URL, so it reaches no access log or proxy log.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from importlib import resources
from typing import Annotated, Any

import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from litestar.response import Stream

from idgate.domain import InvalidRequest, Principal, Role, auditing, services
from idgate.domain.audit import Bucket, Checkpoint, DecisionFilter, LoggedDecision

from .bootstrap import Container
from .schemas import REQUIRES_API_TOKEN, problems

REQUIRES_AUDITOR = REQUIRES_API_TOKEN
DEFAULT_PAGE = 50


# ---- answers ------------------------------------------------------------------------------------
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


class SearchIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    ci: str  # the person's CI; it is used to compute their pseudonym and is not kept anywhere
    limit: int = 100


# ---- the filters every list-like route takes --------------------------------------------------
Text = Annotated[str | None, Parameter(max_length=128)]
Moment = Annotated[datetime | None, Parameter(description="ISO 8601 with a zone, e.g. 2026-12-01T00:00:00Z")]


def decision_filter(
    *,
    verdict: Text = None,
    policy: Text = None,
    outcome: Text = None,
    code: Text = None,
    subject: Text = None,
    imp_uid: Text = None,
    provider: Text = None,
    since: Moment = None,
    until: Moment = None,
) -> DecisionFilter:
    """The query parameters every list-like route takes (a Litestar dependency)."""
    for moment in (since, until):
        if moment is not None and moment.tzinfo is None:
            raise InvalidRequest("since and until need a time zone, e.g. 2026-12-01T00:00:00Z.")
    return DecisionFilter(
        verdict=verdict,
        policy=policy,
        outcome=outcome,
        code=code,
        subject=subject,
        imp_uid=imp_uid,
        provider=provider,
        since=since,
        until=until,
    )


async def _auditor(container: Container, request: Request[Any, Any, Any]) -> Principal:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else None
    return await services.authorize(token, Role.AUDITOR, tokens=container.tokens)


def _entry(found: LoggedDecision) -> DecisionEntry:
    return DecisionEntry(seq=found.seq, record=dict(found.record))


def _checkpoint(checkpoint: Checkpoint) -> CheckpointOut:
    return CheckpointOut(
        size=checkpoint.size, root=checkpoint.root.hex(), signed_at=checkpoint.signed_at, note=checkpoint.note
    )


AUDITOR_PROBLEMS = problems(401, 403, 503)


# ---- routes ---------------------------------------------------------------------------------------
@get(
    "/decisions",
    summary="The decision log, newest first (role auditor)",
    security=REQUIRES_AUDITOR,
    responses=AUDITOR_PROBLEMS,
)
async def list_decisions(
    container: NamedDependency[Container],
    request: Request[Any, Any, Any],
    where: NamedDependency[DecisionFilter],
    *,
    before: Annotated[int | None, Parameter(ge=1, description="the `next_before` of the page before")] = None,
    limit: Annotated[int, Parameter(ge=1, le=auditing.MAX_PAGE)] = DEFAULT_PAGE,
) -> DecisionList:
    asker = await _auditor(container, request)
    log, _ = container.decision_log()
    page = await auditing.list_decisions(log=log, asker=asker, where=where, before=before, limit=limit)
    return DecisionList(decisions=[_entry(d) for d in page.decisions], next_before=page.next_before)


@get(
    "/decisions/stats",
    summary="Decisions by verdict, and denials by code, per hour or day (role auditor)",
    security=REQUIRES_AUDITOR,
    responses=AUDITOR_PROBLEMS,
)
async def decision_stats(
    container: NamedDependency[Container],
    request: Request[Any, Any, Any],
    where: NamedDependency[DecisionFilter],
    bucket: FromQuery[Bucket] = Bucket.DAY,
) -> StatsOut:
    asker = await _auditor(container, request)
    log, _ = container.decision_log()
    found = await auditing.decision_stats(log=log, asker=asker, where=where, bucket=bucket)
    return StatsOut(
        bucket=found.bucket.value,
        verdicts=[VerdictCount(start=s, verdict=v, count=n) for s, v, n in found.verdicts],
        deny_codes=[DenyCount(start=s, policy=p, code=c, count=n) for s, p, c, n in found.deny_codes],
    )


@get(
    "/decisions/export",
    summary="Every matching decision, streamed: JSON lines or CSV (role auditor)",
    description='`jsonl`: one `{"seq", "record"}` a line, oldest first; what the verifier in '
    "docs/audit-log.md reads. `csv`: the records' fields flattened, for spreadsheets.",
    security=REQUIRES_AUDITOR,
    responses=AUDITOR_PROBLEMS,
    media_type="application/x-ndjson",
)
async def export_decisions(
    container: NamedDependency[Container],
    request: Request[Any, Any, Any],
    where: NamedDependency[DecisionFilter],
    format: Annotated[str, Parameter(pattern="^(jsonl|csv)$")] = "jsonl",
) -> Stream:
    asker = await _auditor(container, request)
    log, _ = container.decision_log()
    entries = await auditing.export_decisions(log=log, asker=asker, where=where, form=format)
    if format == "csv":
        return Stream(_csv(entries), media_type="text/csv", headers=_attachment("decisions.csv"))
    return Stream(_jsonl(entries), media_type="application/x-ndjson", headers=_attachment("decisions.jsonl"))


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


async def _jsonl(entries: AsyncIterator[LoggedDecision]) -> AsyncIterator[bytes]:
    async for entry in entries:
        yield json.dumps({"seq": entry.seq, "record": entry.record}, ensure_ascii=False).encode() + b"\n"


CSV_COLUMNS = (
    "seq", "decision_id", "decided_at", "verdict", "subject", "imp_uid", "provider", "policy_set",
    "identity_ref", "channel", "caller", "results",
)  # fmt: skip


async def _csv(entries: AsyncIterator[LoggedDecision]) -> AsyncIterator[bytes]:
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


@post(
    "/decisions/search",
    status_code=200,
    summary="A person's decisions, by CI in the body (role auditor)",
    security=REQUIRES_AUDITOR,
    responses=problems(401, 403, 415, 503),
)
async def search_decisions(
    container: NamedDependency[Container], request: Request[Any, Any, Any], data: JSONBody[SearchIn]
) -> DecisionList:
    asker = await _auditor(container, request)
    log, _ = container.decision_log()
    found = await auditing.decisions_of_person(log=log, asker=asker, ci=data.ci, limit=data.limit)
    return DecisionList(decisions=[_entry(d) for d in found], next_before=None)


@get(
    "/decisions/checkpoints",
    summary="Signed tree heads, newest first, and the key that signs them (role auditor)",
    security=REQUIRES_AUDITOR,
    responses=AUDITOR_PROBLEMS,
)
async def list_checkpoints(
    container: NamedDependency[Container],
    request: Request[Any, Any, Any],
    limit: Annotated[int, Parameter(ge=1, le=auditing.MAX_PAGE)] = 20,
) -> CheckpointList:
    asker = await _auditor(container, request)
    log, signer = container.decision_log()
    found = await auditing.list_checkpoints(log=log, asker=asker, limit=limit)
    return CheckpointList(
        log_name=container.settings.audit.log_name,
        public_key=signer.public_key_pem(),
        checkpoints=[_checkpoint(c) for c in found],
    )


@get(
    "/decisions/consistency",
    summary="Proof that the log of `new` entries only appended to the one of `old` (role auditor)",
    security=REQUIRES_AUDITOR,
    responses=AUDITOR_PROBLEMS,
)
async def prove_consistency(
    container: NamedDependency[Container],
    request: Request[Any, Any, Any],
    old: Annotated[int, Parameter(ge=1)],
    new: Annotated[int, Parameter(ge=1)],
) -> ConsistencyOut:
    asker = await _auditor(container, request)
    log, _ = container.decision_log()
    proof = await auditing.prove_consistency(log=log, asker=asker, old_size=old, new_size=new)
    return ConsistencyOut(
        old_size=proof.old_size,
        new_size=proof.new_size,
        old_root=proof.old_root.hex(),
        new_root=proof.new_root.hex(),
        hashes=[h.hex() for h in proof.path],
        verifies=proof.verifies(),
    )


@get(
    "/decisions/log",
    summary="The log's size, root and latest checkpoint (role auditor)",
    security=REQUIRES_AUDITOR,
    responses=AUDITOR_PROBLEMS,
)
async def log_status(container: NamedDependency[Container], request: Request[Any, Any, Any]) -> LogStatus:
    asker = await _auditor(container, request)
    log, _ = container.decision_log()
    await log.record_access(asker.name, "log", {})
    head = await log.head()
    latest = await log.checkpoints(limit=1)
    return LogStatus(
        size=head.size, root=head.root.hex(), latest_checkpoint=_checkpoint(latest[0]) if latest else None
    )


@post(
    "/decisions/verify",
    status_code=200,
    summary="Recompute the whole log and its checkpoints (role auditor)",
    security=REQUIRES_AUDITOR,
    responses=AUDITOR_PROBLEMS,
)
async def verify_log(container: NamedDependency[Container], request: Request[Any, Any, Any]) -> VerifyOut:
    asker = await _auditor(container, request)
    log, signer = container.decision_log()
    await log.record_access(asker.name, "verify", {})
    report = await auditing.verify_log(log=log, signer=signer)
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


@get(
    "/decisions/{decision_id:str}",
    summary="One decision and its inclusion proof (role auditor)",
    security=REQUIRES_AUDITOR,
    responses=problems(401, 403, 404, 503),
)
async def show_decision(
    container: NamedDependency[Container], request: Request[Any, Any, Any], decision_id: FromPath[str]
) -> ProvenEntry:
    asker = await _auditor(container, request)
    log, _ = container.decision_log()
    found = await auditing.show_decision(log=log, asker=asker, decision_id=decision_id)
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


@get("/audit", media_type=MediaType.HTML, include_in_schema=False)
async def auditor_page() -> Response[str]:
    page = resources.files("idgate.entrypoints").joinpath("audit.html").read_text("utf-8")
    return Response(page, media_type=MediaType.HTML, headers={"Cache-Control": "no-store"})


DEPENDENCIES = {"where": Provide(decision_filter, sync_to_thread=False)}
ROUTES: Sequence[Any] = (
    list_decisions,
    decision_stats,
    export_decisions,
    search_decisions,
    list_checkpoints,
    prove_consistency,
    log_status,
    verify_log,
    show_decision,
    auditor_page,
)
