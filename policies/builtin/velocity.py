"""Built-in policy `velocity`: at most N verifications of one person, or for one subject, per window.

Counts come from the decision log (every decision, whatever its verdict), so they hold across
workers and restarts. The verification being decided is not in the log yet: with a limit of N, the
(N+1)th verification within the window is the first one held. Two verifications decided at the same
instant may both see the count before the other; the limit is a brake on repetition, not a lock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from idgate.domain import Certification, Outcome, PolicyContext, Ruling
from idgate.policies import PolicyDefinition, hookimpl
from idgate.policies.sdk import AnyPolicyDefinition, Policy

MAX_WINDOW_SECONDS = 366 * 24 * 3600


class Over(enum.StrEnum):
    REVIEW = "review"
    DENY = "deny"


@dataclass(frozen=True, slots=True, kw_only=True)
class VelocityOptions:
    max_per_person: int | None = None  # by CI, or DI for certifications without one
    max_per_subject: int | None = None
    window_seconds: int = 3600
    outcome: Over = Over.DENY

    def __post_init__(self) -> None:
        if self.max_per_person is None and self.max_per_subject is None:
            raise ValueError("set max_per_person, max_per_subject or both")
        for name in ("max_per_person", "max_per_subject"):
            limit = getattr(self, name)
            if limit is not None and limit < 1:
                raise ValueError(f"{name} must be 1 or more, not {limit}")
        if not 1 <= self.window_seconds <= MAX_WINDOW_SECONDS:
            raise ValueError(
                f"window_seconds must be from 1 to {MAX_WINDOW_SECONDS} (a year), not {self.window_seconds}"
            )


def build(options: VelocityOptions) -> Policy:
    over = Outcome.DENY if options.outcome is Over.DENY else Outcome.REVIEW
    window = timedelta(seconds=options.window_seconds)
    per = f"within {options.window_seconds} s"

    async def evaluate(certification: Certification, context: PolicyContext) -> Ruling:
        if context.history is None:
            return Ruling(outcome=Outcome.ERROR, code="no_history", message="no decision log to count in")
        since = context.now - window
        counted = []
        if options.max_per_person is not None and (certification.ci or certification.di):
            count = await context.history.decisions_of_person(
                ci=certification.ci or None, di=certification.di or None, since=since
            )
            if count >= options.max_per_person:
                return Ruling(
                    outcome=over,
                    code="too_many_attempts",
                    message=f"this person was verified {count} times {per}; "
                    f"at most {options.max_per_person} are allowed",
                )
            counted.append("person")
        if options.max_per_subject is not None and context.subject is not None:
            count = await context.history.decisions_of_subject(context.subject, since=since)
            if count >= options.max_per_subject:
                return Ruling(
                    outcome=over,
                    code="too_many_attempts",
                    message=f"this subject was verified {count} times {per}; "
                    f"at most {options.max_per_subject} are allowed",
                )
            counted.append("subject")
        if not counted:
            missing = [
                what
                for what, limited in (
                    ("no CI or DI to count the person by", options.max_per_person is not None),
                    ("no subject", options.max_per_subject is not None),
                )
                if limited
            ]
            return Ruling(outcome=Outcome.ABSTAIN, code="nothing_to_count", message=", ".join(missing))
        return Ruling(
            outcome=Outcome.ALLOW,
            code="within_limit",
            message=f"{' and '.join(counted)} within the limit {per}",
        )

    return evaluate


@hookimpl
def idgate_policy_definitions() -> list[AnyPolicyDefinition]:
    return [
        PolicyDefinition(
            name="velocity",
            version="1.0.0",
            options=VelocityOptions,
            build=build,
            summary="At most N verifications of one person, or for one subject, per window: review or deny.",
        )
    ]
