"""Review cases over HTTP, for reviewers (bearer tokens with role `reviewer`).

Thin like the rest of the HTTP layer: authorise, call one use case of `domain/reviews.py`, shape the
answer with `review_schemas.py`. The note a reviewer sends is kept with the case and is never
logged or echoed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import structlog
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, Parameter

from idgate.domain import Principal, Role, Verdict, reviews, services

from .bootstrap import Container
from .review_schemas import CaseList, ResolutionOut, ResolveIn, case_list_out, resolution_out
from .schemas import REQUIRES_API_TOKEN, bearer_token, documented_parameter, problems

log = structlog.get_logger("idgate.http")
DEFAULT_PAGE = 50
DECISION_ID_PARAMETER = documented_parameter(
    reviews.DECISION_ID_PATTERN, 30, "the decision_id of the review decision that opened the case"
)


async def _reviewer(container: Container, request: Request[Any, Any, Any]) -> Principal:
    token = bearer_token(request.headers.get("authorization"))
    return await services.authorize(token, Role.REVIEWER, tokens=container.tokens)


@get(
    "/reviews",
    summary="Open review cases, newest first (role reviewer)",
    description="Cases that can still be resolved: each expires [reviews] expire_after_seconds after "
    "it opened, which denies it.",
    security=REQUIRES_API_TOKEN,
    responses=problems(401, 403, 503),
)
async def list_reviews(
    container: NamedDependency[Container],
    request: Request[Any, Any, Any],
    before: Annotated[
        str | None, Parameter(max_length=30, description="the `next_before` of the page before")
    ] = None,
    limit: Annotated[int, Parameter(ge=1, le=reviews.MAX_PAGE)] = DEFAULT_PAGE,
) -> CaseList:
    await _reviewer(container, request)
    found = await reviews.list_open_cases(
        cases=container.review_cases(),
        clock=container.clock,
        rules=container.review_rules,
        before=before,
        limit=limit,
    )
    return case_list_out(found)


@post(
    "/reviews/{decision_id:str}/resolve",
    status_code=200,
    summary="Resolve a review case: allow binds the identity it keeps, deny discards it (role reviewer)",
    description="Recorded in the decision log as an entry of its own (channel `review`). 409 when the "
    "case was resolved already or expired, or when allow would bind the person to a second subject.",
    security=REQUIRES_API_TOKEN,
    responses=problems(401, 403, 404, 409, 415, 503),
)
async def resolve_review(
    container: NamedDependency[Container],
    request: Request[Any, Any, Any],
    data: JSONBody[ResolveIn],
    decision_id: FromPath[str] = DECISION_ID_PARAMETER,
) -> ResolutionOut:
    reviewer = await _reviewer(container, request)
    resolved = await reviews.resolve_case(
        decision_id,
        Verdict(data.verdict),
        data.note,
        reviewer=reviewer,
        cases=container.review_cases(),
        clock=container.clock,
        rules=container.review_rules,
    )
    log.info("review_resolved", decision_id=decision_id, verdict=data.verdict, by=reviewer.name)
    return resolution_out(resolved)


ROUTES: Sequence[Any] = (list_reviews, resolve_review)
