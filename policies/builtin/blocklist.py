"""Built-in policy `blocklist`: deny the people the operator barred (`idgate blocklist add`).

The blocklist is kept by CI (as keyed digests; see adapters/store/blocklist.py), the same at every
site. A certification without a CI (some Kakao certificates) cannot be held against it: the policy
abstains or denies, as configured.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from idgate.domain import Certification, Outcome, PolicyContext, Ruling
from idgate.policies import PolicyDefinition, hookimpl
from idgate.policies.sdk import AnyPolicyDefinition, Policy


class WithoutCi(enum.StrEnum):
    ABSTAIN = "abstain"
    DENY = "deny"


@dataclass(frozen=True, slots=True, kw_only=True)
class BlocklistOptions:
    without_ci: WithoutCi = WithoutCi.ABSTAIN


def build(options: BlocklistOptions) -> Policy:
    async def evaluate(certification: Certification, context: PolicyContext) -> Ruling:
        if context.barred is None:
            return Ruling(outcome=Outcome.ERROR, code="no_blocklist", message="no blocklist to look in")
        if not (certification.ci and certification.ci.strip()):
            if options.without_ci is WithoutCi.DENY:
                return Ruling(
                    outcome=Outcome.DENY,
                    code="no_ci",
                    message="the provider gave no CI to look the person up in the blocklist by",
                )
            return Ruling(
                outcome=Outcome.ABSTAIN,
                code="no_ci",
                message="no CI to look the person up in the blocklist by",
            )
        if await context.barred.is_barred(certification.ci):
            return Ruling(outcome=Outcome.DENY, code="barred", message="this person is on the blocklist")
        return Ruling(outcome=Outcome.ALLOW, code="not_barred", message="this person is not on the blocklist")

    return evaluate


@hookimpl
def idgate_policy_definitions() -> list[AnyPolicyDefinition]:
    return [
        PolicyDefinition(
            name="blocklist",
            version="1.0.0",
            options=BlocklistOptions,
            build=build,
            summary="Deny the people the operator barred by CI (`idgate blocklist add`).",
        )
    ]
