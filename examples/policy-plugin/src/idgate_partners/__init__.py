"""Policy `partners_only`: accounts may be opened only for members of the product's partners.

The product names its accounts `<partner>:<member id>` (say `acme:1042`); the policy allows a
certification for a subject whose partner is on the list, and denies the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from idgate.domain import Certification, Outcome, PolicyContext, Ruling
from idgate.policies import PolicyDefinition, hookimpl
from idgate.policies.sdk import AnyPolicyDefinition, Policy


@dataclass(frozen=True, slots=True, kw_only=True)
class PartnerOptions:
    partners: tuple[str, ...] = ()
    separator: str = ":"

    def __post_init__(self) -> None:
        if not self.partners:
            raise ValueError("partners must name at least one partner")


def build(options: PartnerOptions) -> Policy:
    partners = frozenset(p.casefold() for p in options.partners)

    def evaluate(certification: Certification, context: PolicyContext) -> Ruling:
        partner, found, member = (context.subject or "").partition(options.separator)
        if not found or not member:
            return Ruling(outcome=Outcome.DENY, code="not_a_member", message="the account names no partner")
        if partner.casefold() not in partners:
            return Ruling(
                outcome=Outcome.DENY, code="not_a_partner", message="the account's partner is not on the list"
            )
        return Ruling(outcome=Outcome.ALLOW, code="partner_member", message="a member of a partner")

    return evaluate


@hookimpl
def idgate_policy_definitions() -> list[AnyPolicyDefinition]:
    return [
        PolicyDefinition(
            name="partners_only",
            version="0.1.0",
            options=PartnerOptions,
            build=build,
            summary="Only members of the listed partners may sign up.",
        )
    ]
