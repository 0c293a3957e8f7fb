"""Review cases: a `review` verdict with a subject opens one, keeping the identity until it closes.

`review_cases` has a row per case, keyed by the decision that opened it: the kept identity's envelopes
(cleared when the case closes), its state, and who closed it, when and why (the note). On PostgreSQL
the verification's one function call also opens the case: the function of revision 0004 is replaced
by one with ten more arguments, the case's columns, each defaulting to NULL, so that a call without
them (an allow or a deny) is exactly the call it was. Existing data is untouched.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "review_cases",
        sa.Column("decision_id", sa.String(40), primary_key=True),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("opened_at", UTC_TIME, nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        *(sa.Column(column, sa.LargeBinary(), nullable=True) for column in KEPT_ENVELOPES),
        sa.Column("gender", sa.String(10), nullable=True),
        sa.Column("is_foreigner", sa.Boolean(), nullable=True),
        sa.Column("carrier", sa.String(10), nullable=True),
        sa.Column("certified_at", UTC_TIME, nullable=True),
        sa.Column("resolved_at", UTC_TIME, nullable=True),
        sa.Column("resolved_by", sa.String(80), nullable=True),
        sa.Column("note", sa.String(2000), nullable=True),
        sa.Column("resolution_id", sa.String(40), nullable=True),
    )
    op.create_index("ix_review_cases_state_decision_id", "review_cases", ["state", "decision_id"])
    op.create_index("ix_review_cases_state_opened_at", "review_cases", ["state", "opened_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION idgate_record_verification")
        op.execute(RECORD_VERIFICATION)


def downgrade() -> None:
    from idgate.adapters.store.migrations.versions import v0004_decision_log  # noqa: PLC0415

    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION idgate_record_verification")
        op.execute(v0004_decision_log.RECORD_VERIFICATION)
    op.drop_index("ix_review_cases_state_opened_at", table_name="review_cases")
    op.drop_index("ix_review_cases_state_decision_id", table_name="review_cases")
    op.drop_table("review_cases")


KEPT_ENVELOPES = ("ci", "di", "phone", "name", "birth_date")

# Revision 0004's function, and the case: inserted after the identity (an allow binds one, a review
# keeps one, never both) and before the log, whose head row stays locked for the shortest time.
RECORD_VERIFICATION = """
CREATE FUNCTION idgate_record_verification(
    p_imp_uid varchar, p_decision_id varchar, p_at timestamptz, p_prepared varchar,
    p_lock bigint, p_identity_id varchar, p_subject varchar, p_key_id integer, p_index_key_id integer,
    p_ci bytea, p_di bytea, p_phone bytea, p_name bytea, p_birth_date bytea,
    p_gender varchar, p_is_foreigner boolean, p_carrier varchar, p_provider varchar,
    p_certified_at timestamptz, p_kinds varchar[], p_index_keys integer[], p_digests bytea[],
    p_decision_subject varchar, p_decision_provider varchar, p_verdict varchar, p_policy_set varchar,
    p_identity_ref varchar, p_channel varchar, p_caller varchar, p_record bytea,
    p_policies varchar[], p_versions varchar[], p_outcomes varchar[], p_codes varchar[], p_enforced boolean[],
    p_case_key_id integer DEFAULT NULL, p_case_ci bytea DEFAULT NULL, p_case_di bytea DEFAULT NULL,
    p_case_phone bytea DEFAULT NULL, p_case_name bytea DEFAULT NULL, p_case_birth_date bytea DEFAULT NULL,
    p_case_gender varchar DEFAULT NULL, p_case_is_foreigner boolean DEFAULT NULL,
    p_case_carrier varchar DEFAULT NULL, p_case_certified_at timestamptz DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_size bigint;
    v_frontier bytea;
    v_carry bytea;
    v_level integer := 0;
BEGIN
    -- First: its primary key is the lock a concurrent verification of the same imp_uid waits on.
    INSERT INTO consumed_certifications (imp_uid, decision_id, consumed_at)
    VALUES (p_imp_uid, p_decision_id, p_at);
    IF p_prepared IS NOT NULL THEN
        UPDATE prepared_requests SET used_at = p_at WHERE merchant_uid = p_prepared AND used_at IS NULL;
        IF NOT FOUND THEN
            RAISE unique_violation USING CONSTRAINT = 'prepared_request_used',
                MESSAGE = 'the prepared merchant_uid was used already';
        END IF;
    END IF;
    IF p_identity_id IS NOT NULL THEN
        -- Two verifications of one subject take turns from here; each replaces what the other bound.
        PERFORM pg_advisory_xact_lock(p_lock);
        DELETE FROM identities WHERE subject = p_subject;  -- its index rows go with it (ON DELETE CASCADE)
        INSERT INTO identities (id, subject, key_id, index_key_id, ci, di, phone, name, birth_date,
                                gender, is_foreigner, carrier, provider, certified_at, bound_at)
        VALUES (p_identity_id, p_subject, p_key_id, p_index_key_id, p_ci, p_di, p_phone, p_name,
                p_birth_date, p_gender, p_is_foreigner, p_carrier, p_provider, p_certified_at, p_at);
        INSERT INTO identity_index (identity_id, kind, index_key_id, digest)
        SELECT p_identity_id, e.kind, e.key_id, e.digest
        FROM unnest(p_kinds, p_index_keys, p_digests) AS e(kind, key_id, digest);
    END IF;
    IF p_case_key_id IS NOT NULL THEN
        -- A review: the case keeps the identity, sealed to it, until a reviewer resolves it or it expires.
        INSERT INTO review_cases (decision_id, subject, opened_at, state, key_id, ci, di, phone, name,
                                  birth_date, gender, is_foreigner, carrier, certified_at)
        VALUES (p_decision_id, p_decision_subject, p_at, 'open', p_case_key_id, p_case_ci, p_case_di,
                p_case_phone, p_case_name, p_case_birth_date, p_case_gender, p_case_is_foreigner,
                p_case_carrier, p_case_certified_at);
    END IF;
    -- Last, so the head row, which every append in every worker locks, is held the shortest time.
    SELECT size, frontier INTO v_size, v_frontier FROM log_head WHERE id = 1 FOR UPDATE;
    v_carry := sha256('\\x00'::bytea || p_record);
    INSERT INTO decisions (seq, decision_id, imp_uid, subject, provider, verdict, policy_set, decided_at,
                           identity_ref, channel, caller, record)
    VALUES (v_size + 1, p_decision_id, p_imp_uid, p_decision_subject, p_decision_provider, p_verdict,
            p_policy_set, p_at, p_identity_ref, p_channel, p_caller, p_record);
    INSERT INTO log_nodes (level, idx, hash) VALUES (0, v_size, v_carry);
    INSERT INTO decision_results (seq, position, policy, version, outcome, code, enforced)
    SELECT v_size + 1, r.position - 1, r.policy, r.version, r.outcome, r.code, r.enforced
    FROM unnest(p_policies, p_versions, p_outcomes, p_codes, p_enforced)
         WITH ORDINALITY AS r(policy, version, outcome, code, enforced, position);
    -- merkle.Frontier.append: every perfect subtree the new leaf completes, stored; then the new edge.
    WHILE (v_size >> v_level) & 1 = 1 LOOP
        v_carry := sha256('\\x01'::bytea || substring(v_frontier FROM v_level * 32 + 1 FOR 32) || v_carry);
        v_level := v_level + 1;
        INSERT INTO log_nodes (level, idx, hash) VALUES (v_level, v_size >> v_level, v_carry);
    END LOOP;
    IF length(v_frontier) < (v_level + 1) * 32 THEN
        v_frontier := v_frontier || decode(repeat('00', (v_level + 1) * 32 - length(v_frontier)), 'hex');
    END IF;
    v_frontier := overlay(v_frontier PLACING v_carry FROM v_level * 32 + 1 FOR 32);
    UPDATE log_head SET size = v_size + 1, frontier = v_frontier WHERE id = 1;
    RETURN v_size + 1;
END
$$
"""
