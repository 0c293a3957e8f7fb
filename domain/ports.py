"""The ports: what the domain needs from the outside world, named for the role each plays."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from .audit import (
    AuditAccess,
    Bucket,
    Checkpoint,
    ConsistencyProof,
    DecisionFilter,
    DecisionPage,
    InclusionProof,
    LoggedDecision,
    LogHead,
    Stats,
    VerifyReport,
)
from .cases import CasePage, CaseResolution, ReviewCase
from .model import (
    Certification,
    IdentityAccess,
    PolicyContext,
    PolicyDecision,
    PolicyResult,
    PreparedRequest,
    Principal,
    Purged,
    RequestQuota,
    RequestState,
    Role,
    TokenInfo,
    VerifiedIdentity,
)

Progress = Callable[[int, int], None]
"""Called as work goes on with (done, total)."""


class CertificationProvider(Protocol):
    """Where verified identities come from (PortOne V1 today, V2 later)."""

    async def fetch_certification(self, imp_uid: str) -> Certification:
        """Return the certification, or raise CertificationNotFound / ProviderUnavailable / ProviderTimeout."""
        ...


class VerificationStore(Protocol):
    """What idgate remembers: prepared requests, consumed imp_uids and decisions."""

    async def save_prepared_request(
        self, request: PreparedRequest, *, quota: RequestQuota | None = None
    ) -> None:
        """Keep the request. With a quota, count it against the client's window first (across every
        worker sharing the store) and raise TooManyRequests, keeping nothing, when the window is full."""
        ...

    async def find_prepared_request(self, merchant_uid: str) -> PreparedRequest | None:
        """The prepared request, or None when it was never issued or was already used."""
        ...

    async def is_consumed(self, imp_uid: str) -> bool: ...

    async def request_state(self, imp_uid: str, merchant_uid: str | None) -> RequestState:
        """`is_consumed` and `find_prepared_request` at once: one read, one round trip."""
        ...

    async def record_verification(
        self, *, decision: PolicyDecision, certification: Certification, prepared_merchant_uid: str | None
    ) -> None:
        """Consume the imp_uid (and the prepared merchant_uid, if given) and append the decision, atomically.

        When the verdict is allow and the decision has a subject, the certification's identity is
        stored (encrypted) and bound to that subject in the same transaction, replacing what the
        subject had before. When the verdict is review and the decision has a subject, a review case
        is opened instead (see ReviewCases), keeping the identity (encrypted) with it.

        Raises CertificationAlreadyUsed if the imp_uid or merchant_uid was consumed before, by this or
        a concurrent call, and IdentityAlreadyBound if the person is bound to another subject; nothing
        is written in either case.
        """
        ...

    async def get_decision(self, decision_id: str) -> PolicyDecision | None: ...

    async def purge(
        self, *, prepared_expired_before: datetime, consumed_before: datetime, counted_before: datetime
    ) -> Purged:
        """Delete prepared requests that expired, consumed imp_uids and request counts older than the
        given instants, in small batches beside live traffic. Decisions are never purged."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...


class PolicyEvaluator(Protocol):
    """Runs every enabled policy.

    A policy that fails yields an `error` result (which denies), never an exception. A failure of
    idgate's own ports that a policy called (the store, the keyring) is raised as the port raised it:
    such a verification is not decided at all, and consumes nothing.
    """

    @property
    def policy_set(self) -> str:
        """Digest of the enabled policies, their versions and options."""
        ...

    @property
    def enabled(self) -> Sequence[str]:
        """Names of the enabled policies, in the order they run."""
        ...

    async def evaluate(
        self, certification: Certification, context: PolicyContext
    ) -> Sequence[PolicyResult]: ...


class IdentityDirectory(Protocol):
    """Which subjects a person is bound to, found by blind index without decrypting anyone else."""

    async def subjects_with_ci(self, ci: str) -> Sequence[str]: ...

    async def subjects_with_di(self, di: str) -> Sequence[str]: ...


class VerificationHistory(Protocol):
    """How many decisions the log holds for a person, or a subject, since a time (for rate rules).
    The person is found by blind index, by CI or else DI."""

    async def decisions_of_person(self, *, ci: str | None, di: str | None, since: datetime) -> int: ...

    async def decisions_of_subject(self, subject: str, *, since: datetime) -> int: ...


class BarredPeople(Protocol):
    """The operator's blocklist: people barred by CI, kept only as blind indexes."""

    async def is_barred(self, ci: str) -> bool: ...


class IdentityVault(Protocol):
    """Reading and erasing stored identities; every access is recorded with who made it."""

    async def read_identity(self, subject: str, accessor: Principal) -> VerifiedIdentity | None: ...

    async def erase_identity(self, subject: str, accessor: Principal) -> bool:
        """Remove the subject's identity and its indexes; False when there was none (nothing recorded)."""
        ...

    async def accesses(self, subject: str) -> Sequence[IdentityAccess]:
        """Every read and erasure of the subject's identity, oldest first."""
        ...


class AccessTokens(Protocol):
    """API tokens: only their hashes are kept."""

    async def create(self, name: str, role: Role) -> str:
        """Return the new token; it cannot be shown again. Raises TokenNameTaken for a used name."""
        ...

    async def authenticate(self, token: str) -> Principal | None:
        """The token's principal, or None for unknown and revoked tokens."""
        ...

    async def list_tokens(self) -> Sequence[TokenInfo]:
        """Every token ever created, oldest first (never the tokens themselves)."""
        ...

    async def revoke(self, name: str) -> bool:
        """Revoke the named token; False when no active token has that name."""
        ...


class DecisionLog(Protocol):
    """The tamper-evident log of every decision (appended by `VerificationStore.record_verification`),
    as auditors read it."""

    async def head(self) -> LogHead: ...

    async def find(self, decision_id: str) -> LoggedDecision | None: ...

    async def page(self, where: DecisionFilter, *, before: int | None, limit: int) -> DecisionPage:
        """Newest first, entries with seq < `before` (all when None)."""
        ...

    async def stats(self, where: DecisionFilter, bucket: Bucket) -> Stats: ...

    def export(self, where: DecisionFilter) -> AsyncIterator[LoggedDecision]:
        """Every matching entry, oldest first, read in batches (memory stays flat however many)."""
        ...

    async def of_person(self, ci: str, *, limit: int) -> Sequence[LoggedDecision]:
        """The decisions of the person with this CI (through their keyed pseudonym), newest first."""
        ...

    async def inclusion_proof(self, seq: int, tree_size: int) -> InclusionProof: ...

    async def consistency_proof(self, old_size: int, new_size: int) -> ConsistencyProof: ...

    async def checkpoints(self, *, limit: int) -> Sequence[Checkpoint]:
        """Newest first."""
        ...

    async def checkpoint_at(self, size: int) -> Checkpoint | None:
        """The checkpoint of a log of exactly `size` entries, if one was made."""
        ...

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Keep it; one for a size already kept is left as it is."""
        ...

    async def verify(
        self, signed: Callable[[Checkpoint], bool], progress: Progress | None = None
    ) -> VerifyReport:
        """Recompute everything (see domain.audit.LogCheck and tree_finding)."""
        ...

    async def record_access(self, actor: str, route: str, query: Mapping[str, str]) -> None: ...

    async def accesses(self, *, limit: int) -> Sequence[AuditAccess]:
        """Newest first."""
        ...


class ReviewCases(Protocol):
    """The cases `review` verdicts open (`VerificationStore.record_verification` opens them, on the
    same store), and their closing by a reviewer or by expiry."""

    async def find(self, decision_id: str) -> ReviewCase | None:
        """The case the decision with this id opened, in whatever state; None when it opened none."""
        ...

    async def open_cases(self, *, opened_after: datetime, before: str | None, limit: int) -> CasePage:
        """Open cases opened after `opened_after`, newest first (by decision_id, which sorts by
        time), those whose decision_id sorts before `before` (all when None)."""
        ...

    async def opened_until(self, at: datetime, *, limit: int) -> Sequence[ReviewCase]:
        """Open cases opened at or before `at`, oldest first: the ones due to expire."""
        ...

    async def close(self, resolution: CaseResolution) -> None:
        """Close the case in one transaction: mark it, keep the note, discard the kept identity, on
        `binds` bind it to the subject exactly as a verification's allow does, and append the
        resolution's entry to the decision log (with the opening decision's identity_ref).

        Raises ReviewCaseClosed when the case is no longer open (a concurrent resolution or expiry),
        and IdentityAlreadyBound when binding it would bind the person to a second subject; nothing is
        written in either case.
        """
        ...


class CheckpointChecker(Protocol):
    """The log's public key: is a checkpoint's note signed by the log?"""

    def verifies(self, note: str) -> bool: ...


class CheckpointSigner(CheckpointChecker, Protocol):
    """The log's signing key, kept apart from everything the database holds."""

    def sign(self, size: int, root: bytes, at: datetime) -> Checkpoint: ...

    def public_key_pem(self) -> str: ...
