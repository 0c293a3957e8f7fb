"""Persistence shapes. These rows never leave the store adapter; it maps them to domain objects."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and returns them aware, on SQLite (no tz support) and PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc(*, nullable: bool = False, index: bool = False) -> sa.Column[datetime]:
    return sa.Column(UTCDateTime(), nullable=nullable, index=index)


class PreparedRequestRow(SQLModel, table=True):
    __tablename__ = "prepared_requests"

    merchant_uid: str = Field(primary_key=True, max_length=80)
    subject: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(sa_column=_utc())
    expires_at: datetime = Field(sa_column=_utc())
    used_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))


class ConsumedCertificationRow(SQLModel, table=True):
    """One row per imp_uid ever used: the primary key is what makes a replay impossible."""

    __tablename__ = "consumed_certifications"

    imp_uid: str = Field(primary_key=True, max_length=32)
    decision_id: str = Field(max_length=40)
    consumed_at: datetime = Field(sa_column=_utc())


class DecisionRow(SQLModel, table=True):
    __tablename__ = "decisions"

    seq: int | None = Field(default=None, primary_key=True)
    decision_id: str = Field(max_length=40, unique=True)
    imp_uid: str = Field(max_length=32)
    subject: str | None = Field(default=None, max_length=128, index=True)
    provider: str = Field(max_length=40)
    verdict: str = Field(max_length=10)
    results: str  # JSON array of policy results; holds no personal data
    policy_set: str = Field(max_length=80)
    decided_at: datetime = Field(sa_column=_utc(index=True))
