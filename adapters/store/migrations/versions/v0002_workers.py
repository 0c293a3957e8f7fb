"""Several workers: DI bound once like CI, the purge's indexes, and request counts for the prepare limit.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from idgate.domain import StoreConflict

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_DI_BOUND_TWICE = sa.text(
    """
    SELECT identities.subject FROM identities JOIN identity_index ON identity_index.identity_id = identities.id
    WHERE identity_index.kind = 'di' AND EXISTS (
        SELECT 1 FROM identity_index AS other
        WHERE other.kind = 'di' AND other.index_key_id = identity_index.index_key_id
          AND other.digest = identity_index.digest AND other.identity_id <> identity_index.identity_id)
    ORDER BY identities.subject
    """
)


def upgrade() -> None:
    # A DI bound to two subjects (possible before: only a lookup guarded the DI fallback) would make
    # the unique index fail halfway; say which subjects instead, and change nothing.
    subjects = [row[0] for row in op.get_bind().execute(_DI_BOUND_TWICE)]
    if subjects:
        shown = ", ".join(subjects[:10]) + (" …" if len(subjects) > 10 else "")
        raise StoreConflict(
            f"{len(subjects)} subjects share a person by DI ({shown}); keep one subject per person "
            "(`idgate erase --subject …` the others), then run `idgate db upgrade` again. Nothing was changed."
        )
    op.create_index(
        "uq_identity_index_di",
        "identity_index",
        ["kind", "index_key_id", "digest"],
        unique=True,
        sqlite_where=sa.text("kind = 'di'"),
        postgresql_where=sa.text("kind = 'di'"),
    )
    op.create_index("ix_prepared_requests_expires_at", "prepared_requests", ["expires_at"])
    op.create_index("ix_consumed_certifications_consumed_at", "consumed_certifications", ["consumed_at"])
    op.create_table(
        "request_counts",
        sa.Column("bucket", sa.String(64), primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("request_counts")
    op.drop_index("ix_consumed_certifications_consumed_at", "consumed_certifications")
    op.drop_index("ix_prepared_requests_expires_at", "prepared_requests")
    op.drop_index("uq_identity_index_di", "identity_index")
