"""What goes over the wire: request and response bodies, and how the OpenAPI document describes them.

The id patterns are documented, not enforced, at this layer: the domain enforces them and answers with
its own stable codes (`invalid_imp_uid` …), which a schema-level check would replace with a generic
validation error. The documented patterns are the domain's own (`domain/services.py`), so the two
cannot drift.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import SecurityRequirement
from litestar.params import Parameter

from idgate.domain import PolicyDecision, VerifiedIdentity
from idgate.domain.services import IMP_UID_PATTERN, MERCHANT_UID_PATTERN, SUBJECT_PATTERN

from .claims import ClaimsIn

PROBLEM_JSON = "application/problem+json"
# The token is documented as a security scheme, not as a header parameter: OpenAPI says a header
# parameter named Authorization "SHALL be ignored", and clients generated from the document would drop it.
SECURITY_SCHEME = "api_token"
REQUIRES_API_TOKEN: list[SecurityRequirement] = [{SECURITY_SCHEME: []}]


def _documented(pattern: str, max_length: int, description: str) -> msgspec.Meta:
    # Litestar copies `extra` into the generated schema; msgspec itself checks nothing here.
    return msgspec.Meta(
        extra_json_schema={
            "description": description,
            "extra": {"pattern": f"^{pattern}$", "max_length": max_length},
        }
    )


ImpUid = Annotated[
    str, _documented(IMP_UID_PATTERN, 32, "PortOne's id of the verification, as the browser received it")
]
MerchantUid = Annotated[
    str, _documented(MERCHANT_UID_PATTERN, 80, "the merchant_uid POST /certifications/prepare returned")
]
Subject = Annotated[str, _documented(SUBJECT_PATTERN, 128, "your account id for the person (not PII)")]


def documented_parameter(pattern: str, max_length: int, description: str) -> Any:
    """The same documentation for a path or query parameter."""
    return Parameter(
        description=description, schema_extra={"pattern": f"^{pattern}$", "max_length": max_length}
    )


IMP_UID_PARAMETER = documented_parameter(IMP_UID_PATTERN, 32, "PortOne's id of the verification")
MERCHANT_UID_PARAMETER = documented_parameter(MERCHANT_UID_PATTERN, 80, "the prepared merchant_uid")
SUBJECT_PARAMETER = documented_parameter(SUBJECT_PATTERN, 128, "your account id for the person")


# ---- requests ----------------------------------------------------------------------------------
class PrepareIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    subject: Subject | None = None


class VerifyIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    imp_uid: ImpUid
    merchant_uid: MerchantUid | None = None
    subject: Subject | None = None
    claims: ClaimsIn | None = None


# ---- responses ---------------------------------------------------------------------------------
class PrepareOut(msgspec.Struct, kw_only=True):
    merchant_uid: str
    expires_at: datetime


class Reason(msgspec.Struct, kw_only=True):
    policy: str
    version: str
    outcome: str
    code: str
    message: str
    enforced: bool


class DecisionOut(msgspec.Struct, kw_only=True):
    decision_id: str
    verdict: str
    reasons: list[Reason]
    imp_uid: str
    decided_at: datetime
    policy_set: str


def decision_out(decision: PolicyDecision) -> DecisionOut:
    return DecisionOut(
        decision_id=decision.decision_id,
        verdict=decision.verdict.value,
        reasons=[
            Reason(
                policy=r.policy,
                version=r.version,
                outcome=r.outcome.value,
                code=r.code,
                message=r.message,
                enforced=r.enforced,
            )
            for r in decision.results
        ],
        imp_uid=decision.imp_uid,
        decided_at=decision.decided_at,
        policy_set=decision.policy_set,
    )


class IdentityOut(msgspec.Struct, kw_only=True):
    subject: str
    name: str
    birth_date: date
    gender: str | None
    phone: str | None
    carrier: str | None
    is_foreigner: bool | None
    provider: str
    certified_at: datetime


def identity_out(identity: VerifiedIdentity) -> IdentityOut:
    return IdentityOut(
        subject=identity.subject,
        name=identity.name,
        birth_date=identity.birth_date,
        gender=identity.gender.value if identity.gender else None,
        phone=identity.phone,
        carrier=identity.carrier.value if identity.carrier else None,
        is_foreigner=identity.is_foreigner,
        provider=identity.provider,
        certified_at=identity.certified_at,
    )


class Health(msgspec.Struct, kw_only=True):
    status: str


class Readiness(msgspec.Struct, kw_only=True):
    status: str  # "ready" or "not_ready"
    checks: dict[str, str]  # check name → "ok" or the error code that failed it


# ---- problems (RFC 9457), for the OpenAPI document ---------------------------------------------
class FieldError(msgspec.Struct, kw_only=True):
    message: str
    key: str | None = None
    source: str | None = None


class Problem(msgspec.Struct, kw_only=True):
    """Every error answer: `code` is stable; 5xx answers carry a `reference` to the log line."""

    status: int
    title: str
    detail: str
    code: str
    type: str | None = None
    reference: str | None = None
    errors: list[FieldError] | None = None


_WHEN = {
    400: "the request is not valid (`invalid_request`, `invalid_imp_uid`, `merchant_uid_required`)",
    401: "no, unknown or revoked API token (`unauthenticated`)",
    403: "the token's role does not allow this (`forbidden`)",
    404: "not found",
    408: "the body did not arrive within [http] body_timeout_seconds (`request_timeout`); the connection is closed",
    409: "conflicts with what is stored (`certification_already_used` …); nothing was written",
    415: "the body is not `application/json` (`unsupported_media_type`)",
    429: "too many prepares from this address (`rate_limited`); retry after `Retry-After` seconds",
    422: "the certification cannot be accepted for this request",
    500: "idgate failed (`internal_error`, `identity_integrity_failed`, `keyring_mismatch` …); see `reference`",
    502: "PortOne failed (`provider_unavailable`); nothing was consumed, retry",
    503: "idgate's store or keyring is unavailable; nothing was consumed, retry",
    504: "PortOne did not answer in time (`provider_timeout`); nothing was consumed, retry",
}


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """The error answers a route documents; 400 and 500 can come from any route."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=_WHEN[status],
            generate_examples=False,
        )
        for status in sorted({400, 500, *statuses})
    }


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for any other header or none."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None
