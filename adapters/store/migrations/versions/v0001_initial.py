"""The schema as idgate created it before it had migrations (`create_all` of the 0.1 tables).

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)  # idgate stores UTC; SQLite keeps it as ISO text


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("name", sa.String(80), primary_key=True),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("revoked_at", UTC_TIME, nullable=True),
    )
    op.create_table(
        "consumed_certifications",
        sa.Column("imp_uid", sa.String(32), primary_key=True),
        sa.Column("decision_id", sa.String(40), nullable=False),
        sa.Column("consumed_at", UTC_TIME, nullable=False),
    )
    op.create_table(
        "decisions",
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("decision_id", sa.String(40), nullable=False, unique=True),
        sa.Column("imp_uid", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(128), nullable=True),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("verdict", sa.String(10), nullable=False),
        sa.Column("results", sa.String(), nullable=False),
        sa.Column("policy_set", sa.String(80), nullable=False),
        sa.Column("decided_at", UTC_TIME, nullable=False),
    )
    op.create_index("ix_decisions_decided_at", "decisions", ["decided_at"])
    op.create_index("ix_decisions_subject", "decisions", ["subject"])
    op.create_table(
        "identities",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("subject", sa.String(128), nullable=False, unique=True),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("index_key_id", sa.Integer(), nullable=False),
        sa.Column("ci", sa.LargeBinary(), nullable=True),
        sa.Column("di", sa.LargeBinary(), nullable=True),
        sa.Column("phone", sa.LargeBinary(), nullable=True),
        sa.Column("name", sa.LargeBinary(), nullable=False),
        sa.Column("birth_date", sa.LargeBinary(), nullable=False),
        sa.Column("gender", sa.String(10), nullable=True),
        sa.Column("is_foreigner", sa.Boolean(), nullable=True),
        sa.Column("carrier", sa.String(10), nullable=True),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("certified_at", UTC_TIME, nullable=False),
        sa.Column("bound_at", UTC_TIME, nullable=False),
    )
    op.create_index("ix_identities_key_id", "identities", ["key_id"])
    op.create_index("ix_identities_index_key_id", "identities", ["index_key_id"])
    op.create_table(
        "identity_access",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("action", sa.String(10), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
    )
    op.create_index("ix_identity_access_at", "identity_access", ["at"])
    op.create_index("ix_identity_access_subject", "identity_access", ["subject"])
    op.create_table(
        "key_checks",
        sa.Column("ring", sa.String(10), primary_key=True),
        sa.Column("key_id", sa.Integer(), primary_key=True),
        sa.Column("check_value", sa.LargeBinary(), nullable=False),
        sa.Column("recorded_at", UTC_TIME, nullable=False),
    )
    op.create_table(
        "prepared_requests",
        sa.Column("merchant_uid", sa.String(80), primary_key=True),
        sa.Column("subject", sa.String(128), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
        sa.Column("used_at", UTC_TIME, nullable=True),
    )
    op.create_table(
        "identity_index",
        sa.Column(
            "identity_id",
            sa.String(36),
            sa.ForeignKey("identities.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("index_key_id", sa.Integer(), primary_key=True),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_identity_index_lookup", "identity_index", ["kind", "index_key_id", "digest"])
    op.create_index(
        "uq_identity_index_ci",
        "identity_index",
        ["kind", "index_key_id", "digest"],
        unique=True,
        sqlite_where=sa.text("kind = 'ci'"),
        postgresql_where=sa.text("kind = 'ci'"),
    )


def downgrade() -> None:
    for table in (
        "identity_index",
        "prepared_requests",
        "key_checks",
        "identity_access",
        "identities",
        "decisions",
        "consumed_certifications",
        "api_tokens",
    ):
        op.drop_table(table)
