"""Use cases of review cases: what reviewers list and resolve, and the expiry that denies the rest.

A case can be resolved while it is open and younger than `ReviewRules.expire_after`; after that it
counts as denied whether or not the housekeeping loop has closed it yet. Expiry is counted from when
the case opened, under the setting in force now, so a changed setting applies to open cases too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .cases import CaseResolution, CaseState, Closing, ReviewCase, ReviewReason, resolution
from .errors import (
    IdentityAlreadyBound,
    InvalidRequest,
    ReviewCaseClosed,
    ReviewCaseExpired,
    ReviewCaseNotFound,
)
from .model import Principal, Verdict
from .ports import Clock, ReviewCases

MAX_PAGE = 500
MAX_NOTE = 2000  # characters
EXPIRE_BATCH = 100
DECISION_ID_PATTERN = r"dec_[0-9A-HJKMNP-TV-Z]{26}"
_DECISION_ID = re.compile(DECISION_ID_PATTERN)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewRules:
    expire_after: timedelta = timedelta(days=7)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenCase:
    """A case as a reviewer's list shows it: no personal data beyond the subject (an account id)."""

    decision_id: str
    subject: str
    opened_at: datetime
    expires_at: datetime
    reasons: tuple[ReviewReason, ...]


@dataclass(frozen=True, slots=True)
class OpenCases:
    cases: Sequence[OpenCase]
    next_before: str | None


def validate_decision_id(decision_id: str) -> str:
    if not _DECISION_ID.fullmatch(decision_id):
        raise InvalidRequest(
            "decision_id must be `dec_` followed by 26 characters of Crockford base32, as the "
            "verification's answer and GET /reviews give it."
        )
    return decision_id


async def list_open_cases(
    *, cases: ReviewCases, clock: Clock, rules: ReviewRules, before: str | None, limit: int
) -> OpenCases:
    """Open cases that can still be resolved, newest first."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be 1 to {MAX_PAGE}.")
    if before is not None:
        validate_decision_id(before)
    page = await cases.open_cases(opened_after=_cutoff(clock, rules), before=before, limit=limit)
    return OpenCases([_listed(case, rules) for case in page.cases], page.next_before)


async def resolve_case(
    decision_id: str,
    verdict: Verdict,
    note: str,
    *,
    reviewer: Principal,
    cases: ReviewCases,
    clock: Clock,
    rules: ReviewRules,
) -> CaseResolution:
    """Close an open case as the reviewer decided: allow binds the kept identity to the subject (the
    duplicate rules still hold), deny discards it. The note says why; it stays with the case."""
    validate_decision_id(decision_id)
    if verdict is Verdict.REVIEW:
        raise InvalidRequest("a review is resolved with verdict allow or deny.")
    note = note.strip()
    if not note:
        raise InvalidRequest("say why in `note`: it is kept with the case (never in the decision log).")
    if len(note) > MAX_NOTE:
        raise InvalidRequest(f"the note is longer than {MAX_NOTE} characters; keep it to the reason.")
    case = await cases.find(decision_id)
    if case is None:
        raise ReviewCaseNotFound(
            "no review case was opened by this decision_id; GET /reviews lists the open ones."
        )
    now = clock.now()
    _refuse_closed(case, now, rules)
    closing = Closing.RESOLVED_ALLOW if verdict is Verdict.ALLOW else Closing.RESOLVED_DENY
    resolved = resolution(case, closing, at=now, by=reviewer.name, note=note)
    try:
        await cases.close(resolved)
    except IdentityAlreadyBound:
        raise IdentityAlreadyBound(
            "this person is bound to another subject now, and one person binds to one subject; "
            "nothing changed and the case stays open. Resolve it deny, or have an admin erase the "
            "other binding first (DELETE /identities/{subject})."
        ) from None
    except ReviewCaseClosed:
        raise ReviewCaseClosed(
            "this case was closed by another resolution (or its expiry) a moment ago; a case is "
            "resolved once. Nothing changed."
        ) from None
    return resolved


async def expire_cases(*, cases: ReviewCases, clock: Clock, rules: ReviewRules) -> int:
    """Close every case that outlived `rules.expire_after`, as a deny; returns how many were closed.

    Several workers may expire at once: a case another one closed first is passed over."""
    expired = 0
    while True:
        now = clock.now()
        due = await cases.opened_until(now - rules.expire_after, limit=EXPIRE_BATCH)
        for case in due:
            try:
                await cases.close(resolution(case, Closing.EXPIRED, at=now, by=None, note=None))
            except ReviewCaseClosed:
                continue
            expired += 1
        if len(due) < EXPIRE_BATCH:
            return expired


def _cutoff(clock: Clock, rules: ReviewRules) -> datetime:
    """Cases opened at or before this have expired."""
    return clock.now() - rules.expire_after


def _listed(case: ReviewCase, rules: ReviewRules) -> OpenCase:
    return OpenCase(
        decision_id=case.decision_id,
        subject=case.subject,
        opened_at=case.opened_at,
        expires_at=case.opened_at + rules.expire_after,
        reasons=case.reasons(),
    )


def _refuse_closed(case: ReviewCase, now: datetime, rules: ReviewRules) -> None:
    expires_at = case.opened_at + rules.expire_after
    if case.state is CaseState.EXPIRED or (case.state is CaseState.OPEN and now >= expires_at):
        raise ReviewCaseExpired(
            f"this case expired unresolved at {expires_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, "
            "which denied it and discards the identity; the user can verify again."
        )
    if case.state is not CaseState.OPEN:
        when = f" at {case.resolved_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if case.resolved_at else ""
        verdict = "allow" if case.state is CaseState.ALLOWED else "deny"
        raise ReviewCaseClosed(
            f"this case was resolved already ({verdict}, by {case.resolved_by}{when}); a case is "
            "resolved once."
        )
