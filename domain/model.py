"""Value objects of the verification domain: what PortOne certified, and what idgate decided."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ports import BarredPeople, IdentityDirectory, VerificationHistory


class Gender(enum.StrEnum):
    MALE = "male"
    FEMALE = "female"


class Carrier(enum.StrEnum):
    """Mobile carriers as the domain names them; adapters translate PortOne's spellings (V1 `LGT`)."""

    SKT = "SKT"
    KT = "KT"
    LGU = "LGU"
    SKT_MVNO = "SKT_MVNO"
    KT_MVNO = "KT_MVNO"
    LGU_MVNO = "LGU_MVNO"

    @property
    def is_mvno(self) -> bool:
        return self.name.endswith("_MVNO")


@dataclass(frozen=True, slots=True, kw_only=True)
class Certification:
    """One finished (or unfinished) identity verification, as reported by PortOne.

    `ci` is the person's cross-site unique key (absent for some Kakao certificates), `di` the
    per-merchant duplicate-check key (absent for KG이니시스 통합인증). `is_foreigner` is None when the
    provider does not know. `phone` holds digits only, and is None unless the carrier approved it.
    """

    imp_uid: str
    merchant_uid: str | None
    provider: str
    name: str
    gender: Gender | None
    birth_date: date
    phone: str | None
    carrier: Carrier | None
    is_foreigner: bool | None
    ci: str | None
    di: str | None
    certified: bool
    certified_at: datetime
    origin: str | None = None

    def __post_init__(self) -> None:
        if self.certified_at.tzinfo is None:
            raise ValueError("certified_at must be timezone-aware")
        if self.phone is not None and not self.phone.isdigit():
            raise ValueError("phone must hold digits only")

    def __repr__(self) -> str:
        # A repr ends up in logs and tracebacks; it must not carry the person's identity.
        return (
            f"Certification(imp_uid={self.imp_uid!r}, provider={self.provider!r}, certified={self.certified})"
        )


class Outcome(enum.StrEnum):
    """What one policy concluded. `abstain` means "no opinion"; `error` means the policy failed."""

    ALLOW = "allow"
    DENY = "deny"
    REVIEW = "review"
    ABSTAIN = "abstain"
    ERROR = "error"


class Verdict(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REVIEW = "review"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ruling:
    """What a policy returns: its outcome plus a stable machine code and a human message."""

    outcome: Outcome
    code: str
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyResult:
    """A ruling attributed to the policy (and version) that made it; `enforced` is False in shadow mode."""

    policy: str
    version: str
    outcome: Outcome
    code: str
    message: str
    enforced: bool = True
    duration_us: int = 0  # how long the policy took, in microseconds


class Channel(enum.StrEnum):
    """How a verification reached idgate."""

    HTTP = "http"  # POST /certifications
    REDIRECT = "redirect"  # GET /certifications/redirect
    CLI = "cli"  # idgate verify
    REVIEW = "review"  # a reviewer's resolution of a review case, or its expiry (a log entry of its own)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyDecision:
    decision_id: str
    imp_uid: str
    subject: str | None
    verdict: Verdict
    results: tuple[PolicyResult, ...]
    decided_at: datetime
    policy_set: str
    provider: str
    channel: Channel | None = Channel.HTTP  # None only on decisions logged before idgate recorded it
    caller: str | None = None  # who asked, when the channel knows (the CLI's operator); never a person's data


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedRequest:
    """A merchant_uid idgate issued before the verification window opened, bound to a subject."""

    merchant_uid: str
    subject: str | None
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class RequestState:
    """What the store knows of a verification request before PortOne is asked: whether its imp_uid was
    used, and the prepared request its merchant_uid names (None: never issued, or used already)."""

    consumed: bool
    prepared: PreparedRequest | None


@dataclass(frozen=True, slots=True)
class RequestQuota:
    """At most `limit` requests in each `window` from one client (an address; opaque to the domain).

    Windows are fixed, counted from a shared origin, so every worker and every store agrees on them.
    """

    client: str
    limit: int
    window: timedelta

    def window_at(self, at: datetime) -> tuple[datetime, int]:
        """The start of the window `at` falls in, and the whole seconds until the next one begins."""
        elapsed = (at - _WINDOWS_FROM) % self.window
        return at - elapsed, max(1, math.ceil((self.window - elapsed).total_seconds()))


_WINDOWS_FROM = datetime(2020, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Purged:
    """How many rows a purge removed, by what they were."""

    prepared_requests: int = 0
    consumed_certifications: int = 0
    request_counts: int = 0


class Role(enum.StrEnum):
    SERVICE = "service"  # product backends: read verified identities
    AUDITOR = "auditor"  # read the decision log
    ADMIN = "admin"  # erase identities
    REVIEWER = "reviewer"  # resolve the review cases that `review` verdicts open


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is calling, as established from an API token."""

    name: str
    role: Role


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenInfo:
    """What is known of an API token besides the token itself, which is never stored."""

    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityAccess:
    """One read or erasure of a stored identity, and who made it."""

    at: datetime
    actor: str
    role: Role
    action: str  # "read" or "erase"
    subject: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedIdentity:
    """The identity bound to a subject, as a product backend may read it back."""

    subject: str
    name: str
    birth_date: date
    gender: Gender | None
    phone: str | None
    carrier: Carrier | None
    is_foreigner: bool | None
    provider: str
    certified_at: datetime

    def __repr__(self) -> str:
        return f"VerifiedIdentity(subject={self.subject!r}, provider={self.provider!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Claims:
    """What the user typed into the product's own form, for policies to hold against what was
    certified. Claims are never stored, logged or echoed: the repr names the fields given, not
    their values."""

    name: str | None = None
    birth_date: date | None = None
    phone: str | None = None

    def given(self) -> tuple[str, ...]:
        return tuple(f for f in ("name", "birth_date", "phone") if getattr(self, f) is not None)

    def __repr__(self) -> str:
        return f"Claims(given={self.given()!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyContext:
    """Everything a policy may consider besides the certification itself.

    `identities` answers "who else is this person?" (see IdentityDirectory), `history` "how often
    was this person, or this subject, verified lately?" and `barred` "is this person on the
    operator's blocklist?". Each is None only where there is no store (a single policy's unit test,
    `idgate policies test`); a policy that needs one and finds None answers `error`. `claims` are
    what the user typed, when the product sent them.
    """

    subject: str | None
    now: datetime
    identities: IdentityDirectory | None = None
    history: VerificationHistory | None = None
    barred: BarredPeople | None = None
    claims: Claims | None = None
