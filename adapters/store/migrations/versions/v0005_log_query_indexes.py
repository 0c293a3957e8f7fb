"""Indexes that let the auditors' filters find a page of the decision log from indexes alone.

A page is read in two steps (adapters/store/decision_log.py): the matching seqs, newest first, then
the records of those few. Each policy-result filter needs an index that leads with its equalities and
ends in `seq`, so the newest matches come first without sorting; the time filter needs `seq` beside
`decided_at`, so PostgreSQL reads a window's seqs from the index alone (SQLite's indexes carry the
rowid, which is `seq`, already). Revision 0004's (policy, outcome, code, seq) served only the three
filters together; it makes way for (policy, seq), (policy, outcome, seq) and (policy, code, seq).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_decision_results_policy", table_name="decision_results")
    op.create_index("ix_decision_results_policy", "decision_results", ["policy", "seq"])
    op.create_index("ix_decision_results_policy_outcome", "decision_results", ["policy", "outcome", "seq"])
    op.create_index("ix_decision_results_policy_code", "decision_results", ["policy", "code", "seq"])
    op.drop_index("ix_decisions_decided_at", table_name="decisions")
    op.create_index("ix_decisions_decided_at", "decisions", ["decided_at", "seq"])


def downgrade() -> None:
    op.drop_index("ix_decisions_decided_at", table_name="decisions")
    op.create_index("ix_decisions_decided_at", "decisions", ["decided_at"])
    op.drop_index("ix_decision_results_policy_code", table_name="decision_results")
    op.drop_index("ix_decision_results_policy_outcome", table_name="decision_results")
    op.drop_index("ix_decision_results_policy", table_name="decision_results")
    op.create_index("ix_decision_results_policy", "decision_results", ["policy", "outcome", "code", "seq"])
