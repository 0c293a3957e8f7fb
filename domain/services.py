"""Use cases. Plain async functions that take their collaborators (ports) as keyword arguments."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from .decisions import combine, new_decision_id
from .errors import (
    CertificationAlreadyUsed,
    CertificationExpired,
    CertificationNotCompleted,
    Forbidden,
    IdentityAlreadyBound,
    IdentityNotFound,
    InvalidCertificationId,
    InvalidRequest,
    MerchantMismatch,
    MerchantUidRequired,
    PreparedRequestInvalid,
    TokenNotFound,
    Unauthenticated,
)
from .model import (
    Certification,
    Channel,
    Claims,
    Outcome,
    PolicyContext,
    PolicyDecision,
    PolicyResult,
    PreparedRequest,
    Principal,
    Purged,
    RequestQuota,
    Role,
    Verdict,
    VerifiedIdentity,
)
from .ports import (
    AccessTokens,
    BarredPeople,
    CertificationProvider,
    Clock,
    IdentityDirectory,
    IdentityVault,
    PolicyEvaluator,
    VerificationHistory,
    VerificationStore,
)

# Binding a person to a subject is exclusive. When a concurrent verification bound the person first
# and no policy turned the verdict away from allow, this result denies.
BOUND_ELSEWHERE = PolicyResult(
    policy="idgate",
    version="1",
    outcome=Outcome.DENY,
    code="identity_bound_elsewhere",
    message="this person was bound to another account by a concurrent verification",
)

# PortOne V1 ids are `imp_` followed by digits; 32 characters is generous and keeps log lines short.
# The patterns are public so that the HTTP schema documents exactly the rules enforced here.
IMP_UID_PATTERN = r"imp_[0-9]{1,28}"
# An account id; "." and ".." alone are refused because they are path segments, not names.
SUBJECT_PATTERN = r"(?!\.{1,2}$)[A-Za-z0-9._:@-]{1,128}"
MERCHANT_UID_PATTERN = r"[A-Za-z0-9._:-]{1,80}"
_IMP_UID = re.compile(IMP_UID_PATTERN)
_SUBJECT = re.compile(SUBJECT_PATTERN)
_MERCHANT_UID = re.compile(MERCHANT_UID_PATTERN)
_TOKEN_NAME = re.compile(r"[A-Za-z0-9._:@-]{1,80}")


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationRules:
    """How strict verification is. Built from configuration by the composition root."""

    require_prepare: bool = True
    prepare_ttl: timedelta = timedelta(minutes=15)
    max_certification_age: timedelta = timedelta(minutes=30)
    prepare_limit: int = 0  # prepares per client and window; 0: no limit
    prepare_window: timedelta = timedelta(minutes=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Retention:
    """How long the rows that only serve replay protection are kept."""

    prepared_requests: timedelta = timedelta(days=1)  # after their expiry
    consumed_certifications: timedelta = timedelta(days=30)  # no shorter than max_certification_age
    request_counts: timedelta = timedelta(minutes=1)  # past windows count for nothing


def validate_imp_uid(imp_uid: str) -> str:
    if not _IMP_UID.fullmatch(imp_uid):
        raise InvalidCertificationId(
            "imp_uid must be 'imp_' followed by digits (at most 32 characters), as PortOne returns it "
            "to the browser; pass the value from the verification callback unchanged."
        )
    return imp_uid


def validate_subject(subject: str | None) -> str | None:
    if subject is not None and not _SUBJECT.fullmatch(subject):
        raise InvalidRequest(
            "subject must be 1-128 characters of letters, digits and . _ : @ - , and not just . or .. "
            "(use your account id, not a name or phone number)."
        )
    return subject


def validate_merchant_uid(merchant_uid: str | None) -> str | None:
    if merchant_uid is not None and not _MERCHANT_UID.fullmatch(merchant_uid):
        raise InvalidRequest(
            "merchant_uid must be 1-80 characters of letters, digits and . _ : - ; "
            "use the value POST /certifications/prepare returned."
        )
    return merchant_uid


async def prepare(
    *,
    subject: str | None,
    client: str | None = None,
    store: VerificationStore,
    clock: Clock,
    rules: VerificationRules,
) -> PreparedRequest:
    """Issue a single-use merchant_uid for the verification window, bound to the subject.

    `client` (the caller's address) is held to `rules.prepare_limit`: anyone can call prepare, and
    every call keeps a row until it expires.
    """
    subject = validate_subject(subject)
    now = clock.now()
    request = PreparedRequest(
        merchant_uid=f"idg_{secrets.token_hex(12)}",
        subject=subject,
        created_at=now,
        expires_at=now + rules.prepare_ttl,
    )
    quota = (
        RequestQuota(client=client, limit=rules.prepare_limit, window=rules.prepare_window)
        if client and rules.prepare_limit
        else None
    )
    await store.save_prepared_request(request, quota=quota)
    return request


async def purge_expired(*, store: VerificationStore, clock: Clock, retention: Retention) -> Purged:
    """Delete what replay protection no longer needs; decisions stay."""
    now = clock.now()
    return await store.purge(
        prepared_expired_before=now - retention.prepared_requests,
        consumed_before=now - retention.consumed_certifications,
        counted_before=now - retention.request_counts,
    )


async def verify(
    *,
    imp_uid: str,
    merchant_uid: str | None,
    subject: str | None,
    provider: CertificationProvider,
    store: VerificationStore,
    identities: IdentityDirectory,
    policies: PolicyEvaluator,
    clock: Clock,
    rules: VerificationRules,
    channel: Channel = Channel.HTTP,
    caller: str | None = None,
    claims: Claims | None = None,
    history: VerificationHistory | None = None,
    barred: BarredPeople | None = None,
) -> PolicyDecision:
    """Turn an imp_uid from the browser into a recorded decision.

    `claims` (what the user typed into the product's form) reach the policies and nothing else:
    they are not part of the decision, the log or any message.

    Cheap checks that need no network come first, so a malformed or replayed id never reaches PortOne.
    """
    validate_imp_uid(imp_uid)
    validate_subject(subject)
    validate_merchant_uid(merchant_uid)

    # Both checks in one read: a replayed id must never reach PortOne, and neither may an id whose
    # merchant_uid idgate did not issue.
    state = await store.request_state(imp_uid, merchant_uid if rules.require_prepare else None)
    if state.consumed:
        raise CertificationAlreadyUsed(
            "this imp_uid was already used for a decision; start a new verification in the browser."
        )
    if rules.require_prepare:
        subject = _check_prepared(merchant_uid, subject, state.prepared, clock=clock)

    certification = await provider.fetch_certification(imp_uid)

    if not certification.certified:
        raise CertificationNotCompleted(
            "the user has not finished this verification (certified is false); ask them to complete it."
        )
    if merchant_uid is not None and certification.merchant_uid != merchant_uid:
        raise MerchantMismatch(
            "the merchant_uid PortOne recorded for this imp_uid differs from the one sent; pass the "
            "merchant_uid from POST /certifications/prepare to IMP.certification(...) and send that "
            "same value with the imp_uid."
        )
    now = clock.now()
    if now - certification.certified_at > rules.max_certification_age:
        raise CertificationExpired("this verification is too old to be used; ask the user to verify again.")

    context = PolicyContext(
        subject=subject, now=now, identities=identities, history=history, barred=barred, claims=claims
    )
    prepared = merchant_uid if rules.require_prepare else None
    logged = _Logged(channel, caller)
    decision = _decision(
        certification, await policies.evaluate(certification, context), context, policies, logged
    )
    try:
        await store.record_verification(
            decision=decision, certification=certification, prepared_merchant_uid=prepared
        )
    except IdentityAlreadyBound:
        # Someone bound this person between our policy run and our commit. Decide again now that the
        # binding is visible; only an allow stores the identity, so the second attempt cannot conflict.
        results = list(await policies.evaluate(certification, context))
        if combine(results) is Verdict.ALLOW:
            results.append(BOUND_ELSEWHERE)
        decision = _decision(certification, results, context, policies, logged)
        await store.record_verification(
            decision=decision, certification=certification, prepared_merchant_uid=prepared
        )
    return decision


@dataclass(frozen=True, slots=True)
class _Logged:
    """How the verification arrived, for its record in the log."""

    channel: Channel
    caller: str | None


def _decision(
    certification: Certification,
    results: Sequence[PolicyResult],
    context: PolicyContext,
    policies: PolicyEvaluator,
    logged: _Logged,
) -> PolicyDecision:
    return PolicyDecision(
        decision_id=new_decision_id(context.now),
        imp_uid=certification.imp_uid,
        subject=context.subject,
        verdict=combine(results),
        results=tuple(results),
        decided_at=context.now,
        policy_set=policies.policy_set,
        provider=certification.provider,
        channel=logged.channel,
        caller=logged.caller,
    )


async def authorize(token: str | None, role: Role, *, tokens: AccessTokens) -> Principal:
    """The caller behind `token`, if it holds `role`. Roles are capabilities, not ranks."""
    if not token:
        raise Unauthenticated(
            "send an API token as `Authorization: Bearer <token>` (see `idgate tokens create`)."
        )
    principal = await tokens.authenticate(token)
    if principal is None:
        raise Unauthenticated("this API token is unknown or revoked; ask an operator for a valid one.")
    if principal.role is not role:
        raise Forbidden(f"this needs a token with role {role.value}; yours has role {principal.role.value}.")
    return principal


async def create_token(name: str, role: Role, *, tokens: AccessTokens) -> str:
    """A new API token for `name`; it is returned once and only its hash is kept."""
    if not _TOKEN_NAME.fullmatch(name):
        raise InvalidRequest(
            "a token name is 1-80 characters of letters, digits and . _ : @ - (e.g. shop-backend)."
        )
    return await tokens.create(name, role)


async def revoke_token(name: str, *, tokens: AccessTokens) -> None:
    if not await tokens.revoke(name):
        raise TokenNotFound(f"no active token is named {name!r}; see `idgate tokens list`.")


async def read_identity(subject: str, *, accessor: Principal, vault: IdentityVault) -> VerifiedIdentity:
    validate_subject(subject)
    identity = await vault.read_identity(subject, accessor)
    if identity is None:
        raise IdentityNotFound("no verified identity is bound to this subject.")
    return identity


async def erase_identity(subject: str, *, accessor: Principal, vault: IdentityVault) -> None:
    validate_subject(subject)
    if not await vault.erase_identity(subject, accessor):
        raise IdentityNotFound("no verified identity is bound to this subject; nothing was erased.")


def _check_prepared(
    merchant_uid: str | None, subject: str | None, prepared: PreparedRequest | None, *, clock: Clock
) -> str | None:
    if merchant_uid is None:
        raise MerchantUidRequired(
            "merchant_uid is required: call POST /certifications/prepare first, pass its merchant_uid "
            "to IMP.certification({merchant_uid, ...}) and send it back here together with the imp_uid."
        )
    if prepared is None:
        raise PreparedRequestInvalid(
            "this merchant_uid was not issued by POST /certifications/prepare or was already used; "
            "prepare a new one for each verification."
        )
    if clock.now() >= prepared.expires_at:
        raise PreparedRequestInvalid(
            "this merchant_uid has expired; call POST /certifications/prepare again and restart the verification."
        )
    if subject is not None and prepared.subject is not None and subject != prepared.subject:
        raise MerchantMismatch(
            "this merchant_uid was prepared for a different subject; prepare one for this subject."
        )
    return subject if subject is not None else prepared.subject
