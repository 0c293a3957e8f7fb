"""Built-in policy `duplicate_identity`: one person, one account.

The person is recognised by CI (the same at every site); when a provider gives no CI (some Kakao
certificates), by DI (per merchant), or not at all, as configured.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from idgate.domain import Certification, Outcome, PolicyContext, Ruling
from idgate.policies import PolicyDefinition, hookimpl
from idgate.policies.sdk import AnyPolicyDefinition, Policy


class OnBound(enum.StrEnum):
    DENY = "deny"
    REVIEW = "review"


class WithoutCi(enum.StrEnum):
    DI = "di"  # fall back to DI, and abstain when there is none either
    ABSTAIN = "abstain"
    DENY = "deny"


@dataclass(frozen=True, slots=True, kw_only=True)
class DuplicateIdentityOptions:
    on_bound: OnBound = OnBound.DENY
    without_ci: WithoutCi = WithoutCi.DI


def build(options: DuplicateIdentityOptions) -> Policy:
    bound = Outcome.DENY if options.on_bound is OnBound.DENY else Outcome.REVIEW

    async def evaluate(certification: Certification, context: PolicyContext) -> Ruling:
        if context.identities is None:
            return Ruling(outcome=Outcome.ERROR, code="no_identity_directory", message="no identity store")
        if certification.ci:
            subjects, key = await context.identities.subjects_with_ci(certification.ci), "CI"
        elif options.without_ci is WithoutCi.DI and certification.di:
            subjects, key = await context.identities.subjects_with_di(certification.di), "DI"
        elif options.without_ci is WithoutCi.DENY:
            return Ruling(
                outcome=Outcome.DENY,
                code="no_ci",
                message="the provider gave no CI to recognise the person by",
            )
        else:
            return Ruling(
                outcome=Outcome.ABSTAIN, code="no_ci", message="no CI or DI to recognise the person by"
            )
        if any(subject != context.subject for subject in subjects):
            return Ruling(
                outcome=bound,
                code="identity_bound_elsewhere",
                message=f"this person ({key}) already has another account",
            )
        return Ruling(
            outcome=Outcome.ALLOW, code="identity_unique", message=f"no other account for this person ({key})"
        )

    return evaluate


@hookimpl
def idgate_policy_definitions() -> list[AnyPolicyDefinition]:
    return [
        PolicyDefinition(
            name="duplicate_identity",
            version="1.0.0",
            options=DuplicateIdentityOptions,
            build=build,
            summary="One person, one account: deny (or review) a person already bound to another subject.",
        )
    ]
