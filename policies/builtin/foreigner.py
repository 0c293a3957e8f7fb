"""Built-in policy `foreigner`: what to do with foreigners (외국인), and with people the provider
says nothing about.

Providers do not always know: Danal reports the flag only under an extra contract, and Kakao and
Naver certificates carry a self-reported one or none. Those certifications have no foreigner flag
(None) and get `when_unknown`, which fails closed unless configured otherwise.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from idgate.domain import Certification, Outcome, PolicyContext, Ruling
from idgate.policies import PolicyDefinition, hookimpl
from idgate.policies.sdk import AnyPolicyDefinition, Policy


class Foreigners(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REVIEW = "review"


class WhenUnknown(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REVIEW = "review"
    ABSTAIN = "abstain"


@dataclass(frozen=True, slots=True, kw_only=True)
class ForeignerOptions:
    foreigners: Foreigners = Foreigners.DENY
    when_unknown: WhenUnknown = WhenUnknown.DENY


_FOREIGNER_RULINGS = {
    Foreigners.ALLOW: Ruling(
        outcome=Outcome.ALLOW, code="foreigner_allowed", message="foreigners (외국인) are accepted"
    ),
    Foreigners.DENY: Ruling(
        outcome=Outcome.DENY, code="foreigner", message="foreigners (외국인) are not accepted"
    ),
    Foreigners.REVIEW: Ruling(
        outcome=Outcome.REVIEW, code="foreigner", message="foreigners (외국인) are reviewed before acceptance"
    ),
}
_UNKNOWN_ENDING = {
    WhenUnknown.ALLOW: "accepted",
    WhenUnknown.DENY: "not accepted",
    WhenUnknown.REVIEW: "reviewed",
    WhenUnknown.ABSTAIN: "no opinion",
}
_DOMESTIC = Ruling(outcome=Outcome.ALLOW, code="domestic", message="certified as a Korean national (내국인)")


def build(options: ForeignerOptions) -> Policy:
    foreigner = _FOREIGNER_RULINGS[options.foreigners]
    unknown = Ruling(
        outcome=Outcome(options.when_unknown.value),
        code="foreigner_unknown",
        message=f"the provider did not say whether the person is a foreigner: "
        f"{_UNKNOWN_ENDING[options.when_unknown]} (when_unknown)",
    )

    def evaluate(certification: Certification, context: PolicyContext) -> Ruling:
        if certification.is_foreigner is None:
            return unknown
        return foreigner if certification.is_foreigner else _DOMESTIC

    return evaluate


@hookimpl
def idgate_policy_definitions() -> list[AnyPolicyDefinition]:
    return [
        PolicyDefinition(
            name="foreigner",
            version="1.0.0",
            options=ForeignerOptions,
            build=build,
            summary="Allow, deny or review foreigners (외국인); when_unknown for providers that do not say.",
        )
    ]
