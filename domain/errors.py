"""Domain errors. Ports raise only these; entrypoints turn them into HTTP answers and exit codes.

Every error class belongs to exactly one `Category`, and the category alone decides the HTTP status
and the CLI exit code (one table, in `idgate.entrypoints.errors`). Every error has a stable `code`
for machines and a message for people that says what was wrong and what to do. Messages never hold
a secret or a person's data.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class Category(enum.Enum):
    """What kind of failure an error is, from the point of view of whoever has to act on it."""

    BAD_INPUT = "bad_input"  # the request is malformed: fix it
    UNAUTHENTICATED = "unauthenticated"  # no valid credentials: send a token
    FORBIDDEN = "forbidden"  # valid credentials without the right role
    NOT_FOUND = "not_found"  # what the request names does not exist
    CONFLICT = "conflict"  # the request clashes with what is stored now
    REJECTED = "rejected"  # well-formed, but this certification cannot be accepted
    THROTTLED = "throttled"  # this client asked too often: wait, then retry
    PROVIDER_FAILED = "provider_failed"  # PortOne failed or answered nonsense: retry later
    PROVIDER_TIMEOUT = "provider_timeout"  # PortOne did not answer in time: retry later
    UNAVAILABLE = "unavailable"  # idgate's own store or keyring cannot serve: retry later
    INTEGRITY = "integrity"  # stored data or keys failed a check: an operator must investigate
    CONFIGURATION = "configuration"  # idgate is set up wrongly: fix the configuration


class IdgateError(Exception):
    """Base of every domain error. Concrete classes set `code` and inherit or set `category`."""

    code: ClassVar[str] = "idgate_error"
    category: ClassVar[Category]

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---- the request is wrong ------------------------------------------------------------------------
class InvalidRequest(IdgateError):
    code = "invalid_request"
    category = Category.BAD_INPUT


class InvalidCertificationId(InvalidRequest):
    code = "invalid_imp_uid"


class MerchantUidRequired(InvalidRequest):
    code = "merchant_uid_required"


class Unauthenticated(IdgateError):
    code = "unauthenticated"
    category = Category.UNAUTHENTICATED


class Forbidden(IdgateError):
    code = "forbidden"
    category = Category.FORBIDDEN


# ---- what the request names does not exist -------------------------------------------------------
class NotFound(IdgateError):
    code = "not_found"
    category = Category.NOT_FOUND


class CertificationNotFound(NotFound):
    code = "certification_not_found"


class IdentityNotFound(NotFound):
    code = "identity_not_found"


class TokenNotFound(NotFound):
    code = "token_not_found"


class KeyNotFound(NotFound):
    code = "key_not_found"


class DecisionNotFound(NotFound):
    code = "decision_not_found"


class ReviewCaseNotFound(NotFound):
    code = "review_case_not_found"


# ---- the request clashes with the stored state ---------------------------------------------------
class Conflict(IdgateError):
    code = "conflict"
    category = Category.CONFLICT


class CertificationAlreadyUsed(Conflict):
    code = "certification_already_used"


class IdentityAlreadyBound(Conflict):
    """The person is already bound to another subject (raised by the store at commit time)."""

    code = "identity_already_bound"


class StoreConflict(Conflict):
    """A concurrent change got in the way (a constraint or a lost compare-and-swap); retrying helps."""

    code = "store_conflict"


class TokenNameTaken(Conflict):
    code = "token_name_taken"


class KeyInUse(Conflict):
    """A key cannot be retired while stored identities still need it."""

    code = "key_in_use"


class KeyIsPrimary(Conflict):
    code = "key_is_primary"


class KeyringExists(Conflict):
    code = "keyring_exists"


class ReviewCaseClosed(Conflict):
    """A review case is resolved once: this one was resolved already, or it expired."""

    code = "review_case_closed"


class ReviewCaseExpired(ReviewCaseClosed):
    """The case was not resolved within [reviews] expire_after_seconds, which denied it."""

    code = "review_case_expired"


# ---- the certification exists but cannot be accepted ---------------------------------------------
class VerificationRejected(IdgateError):
    code = "verification_rejected"
    category = Category.REJECTED


class CertificationNotCompleted(VerificationRejected):
    code = "certification_not_completed"


class CertificationExpired(VerificationRejected):
    code = "certification_expired"


class MerchantMismatch(VerificationRejected):
    code = "merchant_mismatch"


class PreparedRequestInvalid(VerificationRejected):
    code = "merchant_uid_not_prepared"


# ---- the client asked too often: retry later -----------------------------------------------------
class TooManyRequests(IdgateError):
    code = "rate_limited"
    category = Category.THROTTLED

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


# ---- something idgate depends on failed: retry later ---------------------------------------------
class ProviderUnavailable(IdgateError):
    code = "provider_unavailable"
    category = Category.PROVIDER_FAILED


class ProviderTimeout(ProviderUnavailable):
    code = "provider_timeout"
    category = Category.PROVIDER_TIMEOUT


class StoreUnavailable(IdgateError):
    code = "store_unavailable"
    category = Category.UNAVAILABLE


class KeyringUnavailable(IdgateError):
    """The keyring became unreadable under a running server (a broken file, a bad permission)."""

    code = "keyring_unavailable"
    category = Category.UNAVAILABLE


# ---- stored data or keys failed a check ----------------------------------------------------------
class IdentityIntegrityError(IdgateError):
    """A stored ciphertext failed its integrity check or its key is missing: tampering or lost keys."""

    code = "identity_integrity_failed"
    category = Category.INTEGRITY


class KeyringMismatch(IdgateError):
    """The keyring is not the one the stored identities were written with."""

    code = "keyring_mismatch"
    category = Category.INTEGRITY


# ---- idgate is set up wrongly --------------------------------------------------------------------
class ConfigurationError(IdgateError):
    code = "configuration_error"
    category = Category.CONFIGURATION


class SchemaOutOfDate(ConfigurationError):
    """The database's schema is not the revision this idgate was written for."""

    code = "schema_out_of_date"


def error_classes() -> list[type[IdgateError]]:
    """Every concrete error class, for the tables and docs that must name them all."""
    found: list[type[IdgateError]] = []
    pending: list[type[IdgateError]] = [IdgateError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is not IdgateError:
            found.append(cls)
    return sorted(found, key=lambda cls: cls.code)
