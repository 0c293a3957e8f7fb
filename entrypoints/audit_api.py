"""The decision log over HTTP, for auditors (bearer tokens with role `auditor`), and the auditor page.

Thin like the rest of the HTTP layer: parse the filters, authorise, call one use case of
`domain/auditing.py` (which records the question in the access log), and shape the answer. A CI to
search for travels in a POST body, never in a URL, so it reaches no access log or proxy log.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from typing import Annotated, Any

import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from litestar.response import Stream

from idgate.domain import InvalidRequest, Principal, Role, auditing, services
from idgate.domain.audit import Bucket, DecisionFilter

from .audit_schemas import (
    CheckpointList,
    ConsistencyOut,
    DecisionList,
    LogStatus,
    ProvenEntry,
    StatsOut,
    VerifyOut,
    checkpoint_out,
    consistency_out,
    csv_chunks,
    entry_out,
    jsonl_lines,
    proven_entry_out,
    stats_out,
    verify_out,
)
from .bootstrap import Container
from .schemas import REQUIRES_API_TOKEN, bearer_token, problems

REQUIRES_AUDITOR = REQUIRES_API_TOKEN
DEFAULT_PAGE = 50


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
    token = bearer_token(request.headers.get("authorization"))
    return await services.authorize(token, Role.AUDITOR, tokens=container.tokens)


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
    return DecisionList(decisions=[entry_out(d) for d in page.decisions], next_before=page.next_before)


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
    return stats_out(found)


@get(
    "/decisions/export",
    summary="Every matching decision, streamed: JSON lines or CSV (role auditor)",
    description='`jsonl`: one `{"seq", "record"}` a line, oldest first; what the verifier in '
    "docs/audit-log.md reads. `csv`: the records' fields flattened, for spreadsheets.",
    security=REQUIRES_AUDITOR,
    responses=AUDITOR_PROBLEMS,
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
        return Stream(
            csv_chunks(entries), media_type="text/csv; charset=utf-8", headers=_attachment("decisions.csv")
        )
    return Stream(
        jsonl_lines(entries), media_type="application/x-ndjson", headers=_attachment("decisions.jsonl")
    )


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


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
    return DecisionList(decisions=[entry_out(d) for d in found], next_before=None)


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
        checkpoints=[checkpoint_out(c) for c in found],
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
    return consistency_out(proof)


@get(
    "/decisions/log",
    summary="The log's size, root and latest checkpoint (role auditor)",
    security=REQUIRES_AUDITOR,
    responses=AUDITOR_PROBLEMS,
)
async def log_status(container: NamedDependency[Container], request: Request[Any, Any, Any]) -> LogStatus:
    asker = await _auditor(container, request)
    log, _ = container.decision_log()
    head, latest = await auditing.log_status(log=log, asker=asker)
    return LogStatus(
        size=head.size, root=head.root.hex(), latest_checkpoint=checkpoint_out(latest) if latest else None
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
    return verify_out(await auditing.verify_log(log=log, asker=asker, checker=signer))


@get(
    "/decisions/{decision_id:str}",
    summary="One decision and its inclusion proof (role auditor)",
    security=REQUIRES_AUDITOR,
    responses=problems(401, 403, 404, 503),
)
async def show_decision(
    container: NamedDependency[Container],
    request: Request[Any, Any, Any],
    decision_id: FromPath[str],
    tree_size: Annotated[
        int | None,
        Parameter(ge=1, description="prove inclusion in the tree of this size (a checkpoint you hold)"),
    ] = None,
) -> ProvenEntry:
    asker = await _auditor(container, request)
    log, _ = container.decision_log()
    found = await auditing.show_decision(log=log, asker=asker, decision_id=decision_id, tree_size=tree_size)
    return proven_entry_out(found)


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
