"""The ports: what the domain needs from the outside world, named for the role each plays."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from .model import Certification, PolicyContext, PolicyDecision, PolicyResult, PreparedRequest


class CertificationProvider(Protocol):
    """Where verified identities come from (PortOne V1 today, V2 later)."""

    async def fetch_certification(self, imp_uid: str) -> Certification:
        """Return the certification, or raise CertificationNotFound / ProviderUnavailable / ProviderTimeout."""
        ...


class VerificationStore(Protocol):
    """What idgate remembers: prepared requests, consumed imp_uids and decisions."""

    async def save_prepared_request(self, request: PreparedRequest) -> None: ...

    async def find_prepared_request(self, merchant_uid: str) -> PreparedRequest | None:
        """The prepared request, or None when it was never issued or was already used."""
        ...

    async def is_consumed(self, imp_uid: str) -> bool: ...

    async def record_verification(
        self, *, decision: PolicyDecision, certification: Certification, prepared_merchant_uid: str | None
    ) -> None:
        """Consume the imp_uid (and the prepared merchant_uid, if given) and append the decision, atomically.

        Raises CertificationAlreadyUsed if either was consumed before, by this or a concurrent call;
        nothing is written in that case.
        """
        ...

    async def get_decision(self, decision_id: str) -> PolicyDecision | None: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...


class PolicyEvaluator(Protocol):
    """Runs every enabled policy; one failing policy yields an `error` result, never an exception."""

    @property
    def policy_set(self) -> str:
        """Digest of the enabled policies, their versions and options."""
        ...

    async def evaluate(
        self, certification: Certification, context: PolicyContext
    ) -> Sequence[PolicyResult]: ...
