"""What review cases look like, to reviewers over HTTP and to `idgate reviews --json`: one shape for both.

A listed case names the account (subject) and why it waits; nothing of the person it keeps.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from idgate.domain.cases import CaseResolution
from idgate.domain.reviews import MAX_NOTE, OpenCases


class ResolveIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`allow` binds the kept identity to the subject, `deny` discards it; `note` says why."""

    verdict: Literal["allow", "deny"]
    # Kept with the case (ordinary, erasable data), never in the decision log.
    note: Annotated[str, msgspec.Meta(extra_json_schema={"maxLength": MAX_NOTE})]


class ReasonOut(msgspec.Struct, kw_only=True):
    policy: str
    code: str


class CaseOut(msgspec.Struct, kw_only=True):
    decision_id: str  # the decision that opened the case
    subject: str
    opened_at: datetime
    expires_at: datetime  # unresolved by then, the case denies
    reasons: list[ReasonOut]  # the enforced results that asked for review


class CaseList(msgspec.Struct, kw_only=True):
    cases: list[CaseOut]
    next_before: str | None  # pass as `before` for the next, older page; null on the last one


class ResolutionOut(msgspec.Struct, kw_only=True):
    decision_id: str  # the case's
    subject: str
    verdict: str  # allow or deny
    resolved_by: str
    resolved_at: datetime
    logged_as: str  # the decision_id of the decision log entry that records the resolution


def case_list_out(found: OpenCases) -> CaseList:
    return CaseList(
        cases=[
            CaseOut(
                decision_id=case.decision_id,
                subject=case.subject,
                opened_at=case.opened_at,
                expires_at=case.expires_at,
                reasons=[ReasonOut(policy=r.policy, code=r.code) for r in case.reasons],
            )
            for case in found.cases
        ],
        next_before=found.next_before,
    )


def resolution_out(resolved: CaseResolution) -> ResolutionOut:
    return ResolutionOut(
        decision_id=resolved.case.decision_id,
        subject=resolved.case.subject,
        verdict=resolved.entry.verdict.value,
        resolved_by=resolved.by or "",
        resolved_at=resolved.at,
        logged_as=resolved.entry.decision_id,
    )
