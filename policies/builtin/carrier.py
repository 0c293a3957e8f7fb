"""Built-in policy `carrier`: accept certifications by the phone's carrier (통신사), MVNOs (알뜰폰) apart.

A certification carries its carrier only where the provider reports it (Danal under an extra
contract, KCP always, KG이니시스 never); one without gets `when_unknown`, which fails closed unless
configured otherwise.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from idgate.domain import Carrier, Certification, Outcome, PolicyContext, Ruling
from idgate.policies import PolicyDefinition, hookimpl
from idgate.policies.sdk import AnyPolicyDefinition, Policy

_VALID = ", ".join(c.value for c in Carrier)
_ORDER = {c: i for i, c in enumerate(Carrier)}
# PortOne V1 spells LG U+ `LGT`; idgate's carriers follow V2 and the domain (`LGU`).
_V1_SPELLINGS = {"LGT": Carrier.LGU, "LGT_MVNO": Carrier.LGU_MVNO}


class WhenUnknown(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REVIEW = "review"
    ABSTAIN = "abstain"


_UNKNOWN_ENDING = {
    WhenUnknown.ALLOW: "accepted",
    WhenUnknown.DENY: "not accepted",
    WhenUnknown.REVIEW: "reviewed",
    WhenUnknown.ABSTAIN: "no opinion",
}


def _carriers(option: str, names: tuple[str, ...] | None) -> tuple[Carrier, ...] | None:
    if names is None:
        return None
    if not names:
        raise ValueError(f"{option} must list at least one carrier ({_VALID}), or be left out")
    carriers: set[Carrier] = set()
    for position, name in enumerate(names):
        key = name.strip().upper()
        if key in _V1_SPELLINGS:
            raise ValueError(
                f"{option}[{position}] is {name!r}, PortOne V1's spelling; idgate names that carrier "
                f"{_V1_SPELLINGS[key].value!r}"
            )
        try:
            carriers.add(Carrier(key))
        except ValueError:
            raise ValueError(f"{option}[{position}] ({name!r}) is not a carrier; valid: {_VALID}") from None
    return tuple(sorted(carriers, key=_ORDER.__getitem__))


@dataclass(frozen=True, slots=True, kw_only=True)
class CarrierOptions:
    """`allow` (only these) and `deny` (not these): at least one of them, with no carrier in both.
    They are kept as Carrier values in the enum's order, so any spelling of one list configures one
    policy (and gives one policy-set digest)."""

    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] | None = None
    when_unknown: WhenUnknown = WhenUnknown.DENY

    def __post_init__(self) -> None:
        allow, deny = _carriers("allow", self.allow), _carriers("deny", self.deny)
        if allow is None and deny is None:
            raise ValueError(f"allow or deny (or both) must list carriers; valid: {_VALID}")
        both = sorted(set(allow or ()) & set(deny or ()), key=_ORDER.__getitem__)
        if both:
            raise ValueError(f"{', '.join(both)} is in both allow and deny; keep each carrier in one list")
        object.__setattr__(self, "allow", allow)
        object.__setattr__(self, "deny", deny)


def build(options: CarrierOptions) -> Policy:
    allowed = frozenset(Carrier(c) for c in options.allow) if options.allow is not None else None
    denied = frozenset(Carrier(c) for c in options.deny or ())
    # The messages name the configured lists, never the person's own carrier.
    refusal = (
        f"the carrier is not among those accepted ({', '.join(options.allow)})"
        if options.allow is not None
        else f"the carrier is among those refused ({', '.join(options.deny or ())})"
    )
    unknown = Ruling(
        outcome=Outcome(options.when_unknown.value),
        code="carrier_unknown",
        message=f"the provider did not report the carrier: {_UNKNOWN_ENDING[options.when_unknown]} "
        "(when_unknown)",
    )

    def evaluate(certification: Certification, context: PolicyContext) -> Ruling:
        carrier = certification.carrier
        if carrier is None:
            return unknown
        if carrier in denied or (allowed is not None and carrier not in allowed):
            return Ruling(outcome=Outcome.DENY, code="carrier_not_allowed", message=refusal)
        return Ruling(outcome=Outcome.ALLOW, code="carrier_ok", message="the carrier is accepted")

    return evaluate


@hookimpl
def idgate_policy_definitions() -> list[AnyPolicyDefinition]:
    return [
        PolicyDefinition(
            name="carrier",
            version="1.0.0",
            options=CarrierOptions,
            build=build,
            summary="Allow or deny by the phone's carrier (MVNOs apart); when_unknown where none is reported.",
        )
    ]
