"""Built-in policy `age_limit`: deny anyone younger than `min_age` (Korean international or year age)."""

from __future__ import annotations

from dataclasses import dataclass

from idgate.domain import AgeMethod, Certification, Outcome, PolicyContext, Ruling, age
from idgate.policies import PolicyDefinition, hookimpl
from idgate.policies.sdk import AnyPolicyDefinition, Policy

_METHOD_LABEL = {AgeMethod.INTERNATIONAL: "만 나이", AgeMethod.YEAR: "연 나이"}


@dataclass(frozen=True, slots=True, kw_only=True)
class AgeLimitOptions:
    min_age: int = 19
    method: AgeMethod = AgeMethod.INTERNATIONAL

    def __post_init__(self) -> None:
        if not 0 <= self.min_age <= 150:
            raise ValueError(f"min_age must be between 0 and 150, not {self.min_age}")


def build(options: AgeLimitOptions) -> Policy:
    label = _METHOD_LABEL[options.method]

    def evaluate(certification: Certification, context: PolicyContext) -> Ruling:
        years = age(certification.birth_date, context.now, options.method)
        if years >= options.min_age:
            return Ruling(outcome=Outcome.ALLOW, code="age_ok", message=f"{label} {options.min_age} or older")
        return Ruling(
            outcome=Outcome.DENY,
            code="under_age",
            message=f"must be at least {options.min_age} ({label}, {options.method.value} age)",
        )

    return evaluate


@hookimpl
def idgate_policy_definitions() -> list[AnyPolicyDefinition]:
    return [
        PolicyDefinition(
            name="age_limit",
            version="1.0.0",
            options=AgeLimitOptions,
            build=build,
            summary="Deny people younger than min_age, counted in Asia/Seoul per the Civil Act.",
        )
    ]
