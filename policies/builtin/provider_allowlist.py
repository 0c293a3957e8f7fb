"""Built-in policy `provider_allowlist`: accept certifications made through the listed providers only.

Providers are PortOne's `pg_provider` names (`danal`, `inicis_unified`, `kcp_v2`, …). They differ in
what they certify (KG이니시스 통합인증 gives no DI, Kakao certificates may lack a CI), so a product may
trust some and not others. Names are compared trimmed and case-insensitively, since PortOne V2 spells
them in capitals (`INICIS_UNIFIED`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from idgate.domain import Certification, Outcome, PolicyContext, Ruling
from idgate.policies import PolicyDefinition, hookimpl
from idgate.policies.sdk import AnyPolicyDefinition, Policy

_PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")


def provider_key(name: str) -> str:
    """The form in which provider names are compared."""
    return name.strip().casefold()


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderAllowlistOptions:
    """`providers` is kept trimmed, lower-case, sorted and without repeats, so that two spellings of
    one list configure one policy (and give one policy-set digest)."""

    providers: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.providers:
            raise ValueError(
                'providers must list at least one provider, such as ["danal", "inicis_unified"]; '
                "an empty list would deny every verification"
            )
        keys = [provider_key(name) for name in self.providers]
        for position, key in enumerate(keys):
            if not _PROVIDER_NAME.fullmatch(key):
                raise ValueError(
                    f"providers[{position}] ({self.providers[position]!r}) is not a provider name: use "
                    "PortOne's pg_provider names (letters, digits, _ . -), one provider per string"
                )
        object.__setattr__(self, "providers", tuple(sorted(set(keys))))


def build(options: ProviderAllowlistOptions) -> Policy:
    allowed = frozenset(options.providers)
    listed = ", ".join(options.providers)

    def evaluate(certification: Certification, context: PolicyContext) -> Ruling:
        if provider_key(certification.provider) in allowed:
            return Ruling(
                outcome=Outcome.ALLOW, code="provider_allowed", message="the provider is on the allowlist"
            )
        return Ruling(
            outcome=Outcome.DENY,
            code="provider_not_allowed",
            message=f"the provider is not on the allowlist ({listed})",
        )

    return evaluate


@hookimpl
def idgate_policy_definitions() -> list[AnyPolicyDefinition]:
    return [
        PolicyDefinition(
            name="provider_allowlist",
            version="1.0.0",
            options=ProviderAllowlistOptions,
            build=build,
            summary="Deny certifications made through a provider (pg_provider) not on the list.",
        )
    ]
