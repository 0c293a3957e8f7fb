"""Built-in policy `age_limit`: allow people whose Korean age (international or year) is within bounds.

Either bound may be left out; with neither, `min_age` is 19, the limit idgate has always applied.
"""

from __future__ import annotations

from dataclasses import dataclass

from idgate.domain import AgeMethod, Certification, Outcome, PolicyContext, Ruling, age
from idgate.policies import PolicyDefinition, hookimpl
from idgate.policies.sdk import AnyPolicyDefinition, Policy

DEFAULT_MIN_AGE = 19
_OLDEST = 150
_METHOD_LABEL = {AgeMethod.INTERNATIONAL: "만 나이", AgeMethod.YEAR: "연 나이"}


@dataclass(frozen=True, slots=True, kw_only=True)
class AgeLimitOptions:
    """`min_age` and `max_age` are inclusive, and either may be None (left out); without both,
    min_age is 19."""

    min_age: int | None = None
    max_age: int | None = None
    method: AgeMethod = AgeMethod.INTERNATIONAL

    def __post_init__(self) -> None:
        if self.min_age is None and self.max_age is None:
            # Spelled out, so that `{}` and `{min_age = 19}` give one policy-set digest.
            object.__setattr__(self, "min_age", DEFAULT_MIN_AGE)
        low, high = self.min_age, self.max_age
        for option, value in (("min_age", low), ("max_age", high)):
            if value is not None and not 0 <= value <= _OLDEST:
                raise ValueError(f"{option} must be between 0 and {_OLDEST}, not {value}")
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_age ({low}) must not be greater than max_age ({high}); no one could pass")


def build(options: AgeLimitOptions) -> Policy:
    short = _METHOD_LABEL[options.method]
    label = f"{short}, {options.method.value} age"
    low, high = options.min_age, options.max_age
    if low is not None and high is not None:
        within = f"{short} {low} to {high}"
    elif low is not None:
        within = f"{short} {low} or older"
    else:
        within = f"{short} {high} or younger"

    def evaluate(certification: Certification, context: PolicyContext) -> Ruling:
        years = age(certification.birth_date, context.now, options.method)
        # The messages name the bounds, never the person's age: it would give the birth date away.
        if low is not None and years < low:
            return Ruling(outcome=Outcome.DENY, code="under_age", message=f"must be at least {low} ({label})")
        if high is not None and years > high:
            return Ruling(outcome=Outcome.DENY, code="over_age", message=f"must be at most {high} ({label})")
        return Ruling(outcome=Outcome.ALLOW, code="age_ok", message=within)

    return evaluate


@hookimpl
def idgate_policy_definitions() -> list[AnyPolicyDefinition]:
    return [
        PolicyDefinition(
            name="age_limit",
            version="1.1.0",
            options=AgeLimitOptions,
            build=build,
            summary="Allow people from min_age to max_age, counted in Asia/Seoul per the Civil Act.",
        )
    ]
