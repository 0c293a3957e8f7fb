"""Review cases: what a `review` verdict opens, and how its resolution is recorded.

A review verdict with a subject keeps the certified identity (encrypted, beside the case) until a
reviewer resolves the case or it expires. Resolving allow binds the identity to the subject exactly
as an allow would; resolving deny, or expiring, discards it. Every closing is a decision log entry
of its own (channel `review`), made here from the decision that opened the case: the same imp_uid,
subject and provider, one result of the pseudo-policy `review_case`. The reviewer's note is not part
of it: a note may hold anything, and the log cannot forget.

The values cross the `ReviewCases` port; the use cases are in `reviews.py`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .decisions import new_decision_id
from .model import Channel, Outcome, PolicyDecision, PolicyResult, Verdict

# The result a closing records, as idgate's own results are recorded (policy "idgate" in services.py).
POLICY = "review_case"
POLICY_VERSION = "1"


class CaseState(enum.StrEnum):
    OPEN = "open"
    ALLOWED = "allowed"  # a reviewer resolved allow: the identity is bound to the subject
    DENIED = "denied"  # a reviewer resolved deny: the identity is discarded
    EXPIRED = "expired"  # nobody resolved it in time, which denies: the identity is discarded


class Closing(enum.StrEnum):
    """How a case was closed, as the code of its log entry's one result."""

    RESOLVED_ALLOW = "resolved_allow"
    RESOLVED_DENY = "resolved_deny"
    EXPIRED = "expired"

    @property
    def state(self) -> CaseState:
        return _STATES[self]

    @property
    def verdict(self) -> Verdict:
        return Verdict.ALLOW if self is Closing.RESOLVED_ALLOW else Verdict.DENY


_STATES = {
    Closing.RESOLVED_ALLOW: CaseState.ALLOWED,
    Closing.RESOLVED_DENY: CaseState.DENIED,
    Closing.EXPIRED: CaseState.EXPIRED,
}


@dataclass(frozen=True, slots=True)
class ReviewReason:
    """An enforced result that asked for review: what an operator needs to know of why."""

    policy: str
    code: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewCase:
    """A case, as the store knows it: the decision that opened it (its record in the log) and where it
    stands. The kept identity never leaves the store."""

    decision: PolicyDecision
    state: CaseState
    resolved_at: datetime | None = None
    resolved_by: str | None = None  # the reviewer's token name (`cli:<user>` at a terminal); None on expiry

    @property
    def decision_id(self) -> str:
        return self.decision.decision_id

    @property
    def subject(self) -> str:
        if self.decision.subject is None:  # the store opens cases for decisions with a subject only
            raise ValueError("a review case always has a subject")
        return self.decision.subject

    @property
    def opened_at(self) -> datetime:
        return self.decision.decided_at

    def reasons(self) -> tuple[ReviewReason, ...]:
        return tuple(
            ReviewReason(r.policy, r.code)
            for r in self.decision.results
            if r.enforced and r.outcome is Outcome.REVIEW
        )


@dataclass(frozen=True, slots=True)
class CasePage:
    cases: Sequence[ReviewCase]
    next_before: str | None  # pass as `before` for the next (older) page; None at the end


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResolution:
    """One closing of a case, ready for the store: the state it moves to, the log entry that records
    it, and the note (kept with the case, never in the log)."""

    case: ReviewCase
    closing: Closing
    entry: PolicyDecision
    note: str | None
    by: str | None

    @property
    def at(self) -> datetime:
        return self.entry.decided_at

    @property
    def binds(self) -> bool:
        return self.closing is Closing.RESOLVED_ALLOW


def resolution(
    case: ReviewCase, closing: Closing, *, at: datetime, by: str | None, note: str | None
) -> CaseResolution:
    """The closing of `case`, with its log entry: the opening decision's imp_uid, subject, provider and
    policy set, the channel `review`, the reviewer as caller, and one `review_case` result whose
    message names the opening decision."""
    verdict = closing.verdict
    said = (
        f"the review case of {case.decision_id} expired unresolved, which denies"
        if closing is Closing.EXPIRED
        else f"the review case of {case.decision_id} was resolved: {verdict.value}"
    )
    result = PolicyResult(
        policy=POLICY,
        version=POLICY_VERSION,
        outcome=Outcome.ALLOW if verdict is Verdict.ALLOW else Outcome.DENY,
        code=closing.value,
        message=said,
    )
    opened = case.decision
    entry = PolicyDecision(
        decision_id=new_decision_id(at),
        imp_uid=opened.imp_uid,
        subject=opened.subject,
        verdict=verdict,
        results=(result,),
        decided_at=at,
        policy_set=opened.policy_set,
        provider=opened.provider,
        channel=Channel.REVIEW,
        caller=by,
    )
    return CaseResolution(case=case, closing=closing, entry=entry, note=note, by=by)
