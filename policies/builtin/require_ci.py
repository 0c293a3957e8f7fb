"""Built-in policy `require_ci`: deny a certification that does not carry the person's CI.

Without a CI a person cannot be recognised across sites or told apart from their other accounts.
Danal (since 2026, unless contracted) and KG이니시스's Kakao certificates may leave it out. A DI
recognises the person at this merchant only, which is enough for some products: `accept_di`.
"""

from __future__ import annotations

from dataclasses import dataclass

from idgate.domain import Certification, Outcome, PolicyContext, Ruling
from idgate.policies import PolicyDefinition, hookimpl
from idgate.policies.sdk import AnyPolicyDefinition, Policy


@dataclass(frozen=True, slots=True, kw_only=True)
class RequireCiOptions:
    accept_di: bool = False


def _given(key: str | None) -> bool:
    return key is not None and key.strip() != ""


def build(options: RequireCiOptions) -> Policy:
    missing = "the provider gave neither CI nor DI" if options.accept_di else "the provider gave no CI"

    def evaluate(certification: Certification, context: PolicyContext) -> Ruling:
        if _given(certification.ci):
            return Ruling(outcome=Outcome.ALLOW, code="ci_present", message="the provider gave the CI")
        if options.accept_di and _given(certification.di):
            return Ruling(
                outcome=Outcome.ALLOW,
                code="di_present",
                message="the provider gave no CI but a DI (accept_di)",
            )
        return Ruling(outcome=Outcome.DENY, code="no_ci", message=missing)

    return evaluate


@hookimpl
def idgate_policy_definitions() -> list[AnyPolicyDefinition]:
    return [
        PolicyDefinition(
            name="require_ci",
            version="1.0.0",
            options=RequireCiOptions,
            build=build,
            summary="Deny certifications without a CI (or, with accept_di, without a CI or a DI).",
        )
    ]
