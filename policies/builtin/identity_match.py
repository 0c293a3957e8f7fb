"""Built-in policy `identity_match`: the certified person is the one the user said they were.

The product sends what the user typed into its own form as claims (name, birth date, phone; each
optional); each claimed field is held against the certified one, written the way people write it:
names in any Unicode normalisation, spacing and (Latin) case; phones with any separators and with
+82 for the leading 0. Rulings name the fields that differ, never a value.
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from idgate.domain import Certification, Claims, Outcome, PolicyContext, Ruling
from idgate.policies import PolicyDefinition, hookimpl
from idgate.policies.sdk import AnyPolicyDefinition, Policy

_KOREA = "82"
_LABELS = {"name": "name", "birth_date": "birth date", "phone": "phone"}


class WhenMissing(enum.StrEnum):
    DENY = "deny"
    ABSTAIN = "abstain"  # leave the field out and decide on the others


class WithoutClaims(enum.StrEnum):
    ABSTAIN = "abstain"
    DENY = "deny"


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityMatchOptions:
    # Hangul names are written with and without spaces (홍길동, 홍 길동) and mean the same person.
    ignore_spaces: bool = True
    when_missing: WhenMissing = WhenMissing.DENY
    without_claims: WithoutClaims = WithoutClaims.ABSTAIN


def name_key(name: str, *, ignore_spaces: bool) -> str:
    """The form in which names are compared: case folded, whitespace collapsed or dropped, NFC.

    Decomposed before folding, as Unicode's canonical caseless match does (some characters fold
    only apart from their accents); composed again last, after spaces that separated a syllable's
    jamo may have gone.
    """
    words = unicodedata.normalize("NFD", name).casefold().split()
    return unicodedata.normalize("NFC", ("" if ignore_spaces else " ").join(words))


def phone_key(phone: str) -> str:
    """The form in which phones are compared: digits only (any script's), 82 standing for the 0."""
    digits = "".join(str(unicodedata.decimal(ch)) for ch in phone if ch.isdecimal())
    if digits.startswith(_KOREA):
        national = digits[len(_KOREA) :]
        # +82 10-… is the usual form, but people also keep the 0: +82 010-…
        return national if national.startswith("0") else f"0{national}"
    return digits


def _listed(fields: Sequence[str]) -> str:
    labels = [_LABELS[f] for f in fields]
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"


def _agreeing(fields: Sequence[str], singular: str, plural: str) -> str:
    return f"{_listed(fields)} {singular if len(fields) == 1 else plural}"


def build(options: IdentityMatchOptions) -> Policy:
    def certified_key(certification: Certification, field: str) -> str | date | None:
        if field == "birth_date":
            return certification.birth_date
        value = certification.name if field == "name" else certification.phone
        if value is None or not value.strip():
            return None
        return name_key(value, ignore_spaces=options.ignore_spaces) if field == "name" else phone_key(value)

    def claimed_key(claims: Claims, field: str) -> str | date | None:
        if field == "birth_date":
            return claims.birth_date
        if field == "name":
            return None if claims.name is None else name_key(claims.name, ignore_spaces=options.ignore_spaces)
        return None if claims.phone is None else phone_key(claims.phone)

    without_claims = Ruling(
        outcome=Outcome(options.without_claims.value),
        code="no_claims",
        message="the product sent no claims to compare with the certification (without_claims)",
    )

    def evaluate(certification: Certification, context: PolicyContext) -> Ruling:
        claims = context.claims
        given = claims.given() if claims is not None else ()
        if claims is None or not given:
            return without_claims
        differing, missing, matching = [], [], []
        for field in given:
            certified = certified_key(certification, field)
            if certified is None:
                missing.append(field)
            elif claimed_key(claims, field) == certified:
                matching.append(field)
            else:
                differing.append(field)
        if differing:
            return Ruling(
                outcome=Outcome.DENY,
                code="claims_mismatch",
                message=_agreeing(
                    differing, "differs from the certified one", "differ from the certified ones"
                ),
            )
        if missing and (options.when_missing is WhenMissing.DENY or not matching):
            ones = "one" if len(missing) == 1 else "ones"
            lacking = f"the certification has no {_listed(missing)} to compare the claimed {ones} with"
            return Ruling(
                outcome=Outcome(options.when_missing.value),
                code="claims_not_certified",
                message=f"{lacking} (when_missing)",
            )
        matched = _agreeing(matching, "matches the certified one", "match the certified ones")
        if missing:
            matched += f"; the certification has no {_listed(missing)} to compare (when_missing)"
        return Ruling(outcome=Outcome.ALLOW, code="claims_match", message=matched)

    return evaluate


@hookimpl
def idgate_policy_definitions() -> list[AnyPolicyDefinition]:
    return [
        PolicyDefinition(
            name="identity_match",
            version="1.0.0",
            options=IdentityMatchOptions,
            build=build,
            summary="Deny when the claimed name, birth date or phone differs from the certified one.",
        )
    ]
