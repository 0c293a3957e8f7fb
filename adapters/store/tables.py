"""Persistence shapes. These rows never leave the store adapter; it maps them to domain objects."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


def naive_utc(value: datetime) -> datetime:
    """An aware datetime as naive UTC, the form SQLite (which has no time zones) is given."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored; pass an aware datetime")
    return value.astimezone(UTC).replace(tzinfo=None)


def as_utc(value: datetime | str) -> datetime:
    """A stored time as an aware UTC datetime, whether the driver returned text (SQLite) or not."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and returns them aware, on SQLite (no tz support) and PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = naive_utc(value)  # refuses a naive datetime
        return utc if dialect.name == "sqlite" else utc.replace(tzinfo=UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


def _utc(*, nullable: bool = False, index: bool = False) -> sa.Column[datetime]:
    return sa.Column(UTCDateTime(), nullable=nullable, index=index)


class PreparedRequestRow(SQLModel, table=True):
    __tablename__ = "prepared_requests"

    merchant_uid: str = Field(primary_key=True, max_length=80)
    subject: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(sa_column=_utc())
    expires_at: datetime = Field(sa_column=_utc(index=True))  # the purge deletes by it
    used_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))


class ConsumedCertificationRow(SQLModel, table=True):
    """One row per imp_uid ever used: the primary key is what makes a replay impossible."""

    __tablename__ = "consumed_certifications"

    imp_uid: str = Field(primary_key=True, max_length=32)
    decision_id: str = Field(max_length=40)
    consumed_at: datetime = Field(sa_column=_utc(index=True))  # the purge deletes by it


# 64-bit on PostgreSQL; on SQLite INTEGER, which alone makes a primary key the rowid itself.
LOG_POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class DecisionRow(SQLModel, table=True):
    """One entry of the decision log. `record` is the truth (domain/records.py, format 1): the bytes
    whose hash is the entry's leaf in `log_nodes`. The other columns are copies of its fields for
    queries; `idgate decisions verify` checks that they still agree with it. Nothing here identifies
    a person."""

    __tablename__ = "decisions"
    __table_args__ = (
        sa.Index("ix_decisions_verdict_seq", "verdict", "seq"),
        sa.Index("ix_decisions_provider_seq", "provider", "seq"),
        sa.Index("ix_decisions_decided_at", "decided_at", "seq"),
        # The velocity policy counts a person's (or a subject's) decisions since a time from these
        # alone; the equality lookups of the auditors' filters use them as well.
        sa.Index("ix_decisions_subject_decided_at", "subject", "decided_at"),
        sa.Index("ix_decisions_identity_ref_decided_at", "identity_ref", "decided_at"),
    )

    seq: int = Field(sa_column=sa.Column(LOG_POSITION, primary_key=True, autoincrement=False))  # 1, 2, 3 …
    decision_id: str = Field(max_length=40, unique=True)
    imp_uid: str = Field(max_length=32, index=True)
    subject: str | None = Field(default=None, max_length=128)
    provider: str = Field(max_length=40)
    verdict: str = Field(max_length=10)
    policy_set: str = Field(max_length=80)
    decided_at: datetime = Field(sa_column=_utc())
    identity_ref: str | None = Field(default=None, max_length=90)
    channel: str | None = Field(default=None, max_length=10)
    caller: str | None = Field(default=None, max_length=80)
    record: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))


class DecisionResultRow(SQLModel, table=True):
    """Each policy result of each decision, for filtering the log; a copy of the record's `results`."""

    __tablename__ = "decision_results"
    __table_args__ = (
        sa.Index("ix_decision_results_policy", "policy", "seq"),
        sa.Index("ix_decision_results_policy_outcome", "policy", "outcome", "seq"),
        sa.Index("ix_decision_results_policy_code", "policy", "code", "seq"),
        sa.Index("ix_decision_results_code", "code", "seq"),
        sa.Index("ix_decision_results_outcome", "outcome", "seq"),
    )

    seq: int = Field(sa_column=sa.Column(LOG_POSITION, primary_key=True, autoincrement=False))
    position: int = Field(primary_key=True)
    policy: str = Field(max_length=80)
    version: str = Field(max_length=40)
    outcome: str = Field(max_length=10)
    code: str = Field(max_length=80)
    enforced: bool


class LogHeadRow(SQLModel, table=True):
    """The log's one head row: its size and the right edge of its Merkle tree (merkle.Frontier).

    Every append locks it, which is what serialises appends from any number of workers."""

    __tablename__ = "log_head"

    id: int = Field(primary_key=True)  # always 1
    size: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    frontier: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))


class LogNodeRow(SQLModel, table=True):
    """Every perfect subtree of the Merkle tree, the leaves (level 0) included: what proofs are built
    from, and the tree a verification holds the decisions against. Leaf `idx` is decision `seq - 1`."""

    __tablename__ = "log_nodes"

    level: int = Field(primary_key=True)
    idx: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))


class LogCheckpointRow(SQLModel, table=True):
    """A signed tree head, as the C2SP signed note that was published."""

    __tablename__ = "log_checkpoints"

    size: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    root: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    signed_at: datetime = Field(sa_column=_utc())
    note: str


class AuditAccessRow(SQLModel, table=True):
    """Who asked the decision log what, and when (the filters, never a CI that was searched for)."""

    __tablename__ = "audit_access"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=_utc(index=True))
    actor: str = Field(max_length=80, index=True)
    route: str = Field(max_length=80)
    query: str  # JSON of the filters


class IdentityRow(SQLModel, table=True):
    """A verified identity bound to a subject. Identifying fields are envelopes (see adapters.crypto);
    only non-identifying attributes are plaintext."""

    __tablename__ = "identities"

    id: str = Field(primary_key=True, max_length=36)  # a UUID made in the app: it is part of the AAD
    subject: str = Field(max_length=128, unique=True)
    key_id: int = Field(index=True)  # the encryption key of every envelope in the row (a hint; headers rule)
    index_key_id: int = Field(index=True)  # the index key under which this row's digests are complete
    ci: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True))
    di: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True))
    phone: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True))
    name: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    birth_date: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    gender: str | None = Field(default=None, max_length=10)
    is_foreigner: bool | None = None
    carrier: str | None = Field(default=None, max_length=10)
    provider: str = Field(max_length=40)
    certified_at: datetime = Field(sa_column=_utc())
    bound_at: datetime = Field(sa_column=_utc())


class IdentityIndexRow(SQLModel, table=True):
    """Blind-index digests: one row per (identity, kind, index key), so several index keys can coexist."""

    __tablename__ = "identity_index"
    __table_args__ = (
        # One person binds to one subject: a CI digest appears once per index key, and so does a DI
        # (per merchant, so per idgate), the fallback when a certificate carries no CI. Phones repeat.
        *(
            sa.Index(
                f"uq_identity_index_{kind}",
                "kind",
                "index_key_id",
                "digest",
                unique=True,
                sqlite_where=sa.text(f"kind = '{kind}'"),
                postgresql_where=sa.text(f"kind = '{kind}'"),
            )
            for kind in ("ci", "di")
        ),
        sa.Index("ix_identity_index_lookup", "kind", "index_key_id", "digest"),
    )

    identity_id: str = Field(
        sa_column=sa.Column(
            sa.String(36), sa.ForeignKey("identities.id", ondelete="CASCADE"), primary_key=True
        )
    )
    kind: str = Field(primary_key=True, max_length=8)
    index_key_id: int = Field(primary_key=True)
    digest: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))


class IdentityAccessRow(SQLModel, table=True):
    """Who read or erased which subject's identity, and when."""

    __tablename__ = "identity_access"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=_utc(index=True))
    actor: str = Field(max_length=80)
    role: str = Field(max_length=10)
    action: str = Field(max_length=10)
    subject: str = Field(max_length=128, index=True)


class ApiTokenRow(SQLModel, table=True):
    __tablename__ = "api_tokens"

    name: str = Field(primary_key=True, max_length=80)
    role: str = Field(max_length=10)
    token_hash: str = Field(max_length=64, unique=True)  # SHA-256 of the token; the token is never stored
    created_at: datetime = Field(sa_column=_utc())
    revoked_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))


class KeyCheckRow(SQLModel, table=True):
    """A keyed fingerprint of every key ever used with this database (see adapters.crypto.check_value).

    Start-up and every keyring reload compare the keyring against these rows, so a keyring swapped for
    another one is refused before a single identity is written or looked up under it.
    """

    __tablename__ = "key_checks"

    ring: str = Field(primary_key=True, max_length=10)  # "encryption" or "index"
    key_id: int = Field(primary_key=True)
    check_value: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    recorded_at: datetime = Field(sa_column=_utc())


class RequestCountRow(SQLModel, table=True):
    """Requests per client and time window, for the limit on `POST /certifications/prepare`.

    The client is a keyed digest of its address (the address itself is not kept); the database is
    what several workers share, so the count holds across them.
    """

    __tablename__ = "request_counts"

    bucket: str = Field(primary_key=True, max_length=64)
    window_start: datetime = Field(sa_column=sa.Column(UTCDateTime(), primary_key=True))
    count: int


class BarredPersonRow(SQLModel, table=True):
    """The operator's blocklist: a keyed digest of a barred person's CI under one index key. The CI
    itself is never stored, so a new index key cannot be filled in from the rows; `idgate blocklist
    add` with the same CIs again does it. A person's rows under several keys share `entry_id`."""

    __tablename__ = "blocklist"

    index_key_id: int = Field(primary_key=True)
    digest: str = Field(primary_key=True, max_length=64)  # hex HMAC-SHA256, its own purpose and subkey
    entry_id: str = Field(max_length=36, index=True)
    added_at: datetime = Field(sa_column=_utc())
    added_by: str = Field(max_length=80)


class ReviewCaseRow(SQLModel, table=True):
    """A case a `review` verdict opened, keyed by that decision's id. While it is open it keeps the
    certified identity, sealed like an identities row but bound to this table and the decision_id
    (adapters/store/cases.py); closing it clears every identity column. The note is the reviewer's
    free text: it lives here, where it can be corrected or erased, never in the decision log."""

    __tablename__ = "review_cases"
    __table_args__ = (
        sa.Index("ix_review_cases_state_decision_id", "state", "decision_id"),  # the open ones, newest first
        sa.Index("ix_review_cases_state_opened_at", "state", "opened_at"),  # the open ones due to expire
    )

    decision_id: str = Field(primary_key=True, max_length=40)
    subject: str = Field(max_length=128)
    opened_at: datetime = Field(sa_column=_utc())
    state: str = Field(max_length=10)  # open, allowed, denied, expired
    key_id: int | None = None  # the encryption key of the kept envelopes (a hint; headers rule)
    ci: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True))
    di: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True))
    phone: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True))
    name: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True))
    birth_date: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True))
    gender: str | None = Field(default=None, max_length=10)
    is_foreigner: bool | None = None
    carrier: str | None = Field(default=None, max_length=10)
    certified_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    resolved_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    resolved_by: str | None = Field(default=None, max_length=80)
    note: str | None = Field(default=None, max_length=2000)
    resolution_id: str | None = Field(default=None, max_length=40)  # the decision_id of the closing's entry


# Core handles on the same tables, for bulk work where building ORM objects would dominate the cost.
IDENTITIES = SQLModel.metadata.tables["identities"]
IDENTITY_INDEX = SQLModel.metadata.tables["identity_index"]
KEY_CHECKS = SQLModel.metadata.tables["key_checks"]
PREPARED_REQUESTS = SQLModel.metadata.tables["prepared_requests"]
CONSUMED_CERTIFICATIONS = SQLModel.metadata.tables["consumed_certifications"]
DECISIONS = SQLModel.metadata.tables["decisions"]
IDENTITY_ACCESS = SQLModel.metadata.tables["identity_access"]
REQUEST_COUNTS = SQLModel.metadata.tables["request_counts"]
DECISION_RESULTS = SQLModel.metadata.tables["decision_results"]
API_TOKENS = SQLModel.metadata.tables["api_tokens"]
LOG_HEAD = SQLModel.metadata.tables["log_head"]
LOG_NODES = SQLModel.metadata.tables["log_nodes"]
LOG_CHECKPOINTS = SQLModel.metadata.tables["log_checkpoints"]
AUDIT_ACCESS = SQLModel.metadata.tables["audit_access"]
REVIEW_CASES = SQLModel.metadata.tables["review_cases"]
BLOCKLIST = SQLModel.metadata.tables["blocklist"]
