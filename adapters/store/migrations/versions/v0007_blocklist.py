"""The blocklist, and the indexes the velocity policy counts decisions from.

`blocklist` holds a keyed digest of each barred person's CI per blind-index key (never the CI).
The velocity policy counts the decisions of one person (`identity_ref`) or one subject since a
time: (identity_ref, decided_at) and (subject, decided_at) answer that from the index alone, and
take the place of the single-column indexes of revisions 0001 and 0004, whose equality lookups they
serve as well, so an append still writes as many index entries as before.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "blocklist",
        sa.Column("index_key_id", sa.Integer(), primary_key=True),
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("entry_id", sa.String(36), nullable=False),
        sa.Column("added_at", UTC_TIME, nullable=False),
        sa.Column("added_by", sa.String(80), nullable=False),
    )
    op.create_index("ix_blocklist_entry_id", "blocklist", ["entry_id"])
    op.create_index("ix_decisions_identity_ref_decided_at", "decisions", ["identity_ref", "decided_at"])
    op.drop_index("ix_decisions_identity_ref", table_name="decisions")
    op.create_index("ix_decisions_subject_decided_at", "decisions", ["subject", "decided_at"])
    op.drop_index("ix_decisions_subject", table_name="decisions")


def downgrade() -> None:
    op.create_index("ix_decisions_subject", "decisions", ["subject"])
    op.drop_index("ix_decisions_subject_decided_at", table_name="decisions")
    op.create_index("ix_decisions_identity_ref", "decisions", ["identity_ref"])
    op.drop_index("ix_decisions_identity_ref_decided_at", table_name="decisions")
    op.drop_index("ix_blocklist_entry_id", table_name="blocklist")
    op.drop_table("blocklist")
