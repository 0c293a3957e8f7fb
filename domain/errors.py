"""Domain errors. Ports raise only these; entrypoints map them to HTTP statuses and exit codes.

Every error has a stable `code` for machines and a message for people that says what was wrong and
what to do. Messages never contain a secret or a person's data.
"""

from __future__ import annotations


class IdgateError(Exception):
    code = "idgate_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(IdgateError):
    code = "invalid_request"


class InvalidCertificationId(InvalidRequest):
    code = "invalid_imp_uid"


class MerchantUidRequired(InvalidRequest):
    code = "merchant_uid_required"


class CertificationNotFound(IdgateError):
    code = "certification_not_found"


class CertificationAlreadyUsed(IdgateError):
    code = "certification_already_used"


class VerificationRejected(IdgateError):
    """The certification exists but cannot be accepted for this request (HTTP 422)."""

    code = "verification_rejected"


class CertificationNotCompleted(VerificationRejected):
    code = "certification_not_completed"


class CertificationExpired(VerificationRejected):
    code = "certification_expired"


class MerchantMismatch(VerificationRejected):
    code = "merchant_mismatch"


class PreparedRequestInvalid(VerificationRejected):
    code = "merchant_uid_not_prepared"


class ProviderUnavailable(IdgateError):
    code = "provider_unavailable"


class ProviderTimeout(ProviderUnavailable):
    code = "provider_timeout"


class StoreUnavailable(IdgateError):
    code = "store_unavailable"


class IdentityAlreadyBound(IdgateError):
    """The person is already bound to another subject (raised by the store at commit time)."""

    code = "identity_already_bound"


class IdentityNotFound(IdgateError):
    code = "identity_not_found"


class IdentityIntegrityError(IdgateError):
    """A stored ciphertext failed its integrity check or its key is missing: tampering or lost keys."""

    code = "identity_integrity_failed"


class Unauthenticated(IdgateError):
    code = "unauthenticated"


class Forbidden(IdgateError):
    code = "forbidden"


class ConfigurationError(IdgateError):
    code = "configuration_error"
