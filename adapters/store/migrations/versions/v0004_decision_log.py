"""The tamper-evident decision log: records, the Merkle tree, checkpoints, the auditors' access log.

Every decision gets its format-1 record (domain/records.py) and its leaf hash, and its place in the
tree (`seq`, from 1, without gaps). Decisions made before this revision are turned into records from
their columns: they have no `identity_ref`, `channel` or `caller` (null), and policy durations of 0.
Their `seq` is renumbered 1, 2, 3 … in the order they had, because a PostgreSQL sequence leaves gaps
where a transaction rolled back, and a log position may not. On PostgreSQL the verification's one
function call now also appends to the log (replacing revision 0003's).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from idgate.domain import merkle, records

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("identity_ref", sa.String(90), nullable=True))
        batch.add_column(sa.Column("channel", sa.String(10), nullable=True))
        batch.add_column(sa.Column("caller", sa.String(80), nullable=True))
        batch.add_column(sa.Column("record", sa.LargeBinary(), nullable=True))
    op.create_table(
        "decision_results",
        sa.Column("seq", POSITION, primary_key=True, autoincrement=False),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("policy", sa.String(80), nullable=False),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("code", sa.String(80), nullable=False),
        sa.Column("enforced", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "log_head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "log_nodes",
        sa.Column("level", sa.Integer(), primary_key=True),
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "log_checkpoints",
        sa.Column("size", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("signed_at", UTC_TIME, nullable=False),
        sa.Column("note", sa.String(), nullable=False),
    )
    op.create_table(
        "audit_access",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("route", sa.String(80), nullable=False),
        sa.Column("query", sa.String(), nullable=False),
    )
    _log_the_decisions_made_so_far(bind)
    with op.batch_alter_table("decisions") as batch:
        batch.alter_column("record", existing_type=sa.LargeBinary(), nullable=False)
        batch.drop_column("results")  # the record holds them, decision_results indexes them
        if bind.dialect.name == "postgresql":  # positions come from the log's head, not a sequence
            batch.alter_column("seq", existing_type=sa.Integer(), type_=sa.BigInteger(), server_default=None)
    op.create_index("ix_decisions_imp_uid", "decisions", ["imp_uid"])
    op.create_index("ix_decisions_identity_ref", "decisions", ["identity_ref"])
    op.create_index("ix_decisions_verdict_seq", "decisions", ["verdict", "seq"])
    op.create_index("ix_decisions_provider_seq", "decisions", ["provider", "seq"])
    op.create_index("ix_decision_results_policy", "decision_results", ["policy", "outcome", "code", "seq"])
    op.create_index("ix_decision_results_code", "decision_results", ["code", "seq"])
    op.create_index("ix_decision_results_outcome", "decision_results", ["outcome", "seq"])
    op.create_index("ix_audit_access_at", "audit_access", ["at"])
    op.create_index("ix_audit_access_actor", "audit_access", ["actor"])
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION idgate_record_verification")
        op.execute(RECORD_VERIFICATION)


def _log_the_decisions_made_so_far(bind: sa.Connection) -> None:
    old = bind.execute(
        sa.text(
            "SELECT seq, decision_id, imp_uid, subject, provider, verdict, results, policy_set, decided_at "
            "FROM decisions ORDER BY seq"
        )
    ).all()
    frontier = merkle.Frontier()
    for position, row in enumerate(old, start=1):
        results = json.loads(row.results)
        record = records.normalized(
            {
                "format": records.FORMAT,
                "decision_id": row.decision_id,
                "decided_at": records.utc_text(_aware(row.decided_at)),
                "verdict": row.verdict,
                "policy_set": row.policy_set,
                "subject": row.subject,
                "imp_uid": row.imp_uid,
                "provider": row.provider,
                "identity_ref": None,
                "channel": None,
                "caller": None,
                "results": [{**r, "duration_us": 0} for r in results],
            }
        )
        data = records.canonical(record)
        leaf = merkle.leaf_hash(data)
        bind.execute(
            sa.text("UPDATE decisions SET seq = :new, record = :record WHERE seq = :old"),
            {"new": position, "record": data, "old": row.seq},
        )
        for index, r in enumerate(results):
            bind.execute(
                sa.text(
                    "INSERT INTO decision_results (seq, position, policy, version, outcome, code, enforced) "
                    "VALUES (:seq, :position, :policy, :version, :outcome, :code, :enforced)"
                ),
                {
                    "seq": position,
                    "position": index,
                    **{k: r[k] for k in ("policy", "version", "outcome", "code", "enforced")},
                },
            )
        for level, index, node in [(0, position - 1, leaf), *frontier.append(leaf)]:
            bind.execute(
                sa.text("INSERT INTO log_nodes (level, idx, hash) VALUES (:level, :idx, :hash)"),
                {"level": level, "idx": index, "hash": node},
            )
    bind.execute(
        sa.text("INSERT INTO log_head (id, size, frontier) VALUES (1, :size, :frontier)"),
        {"size": frontier.size, "frontier": frontier.to_bytes()},
    )


def _aware(at: datetime | str) -> datetime:
    """A stored time as an aware datetime: SQLite hands back naive UTC text, PostgreSQL a datetime."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def downgrade() -> None:
    raise NotImplementedError("the decision log cannot be taken out again; restore a backup instead")


RECORD_VERIFICATION = """
CREATE FUNCTION idgate_record_verification(
    p_imp_uid varchar, p_decision_id varchar, p_at timestamptz, p_prepared varchar,
    p_lock bigint, p_identity_id varchar, p_subject varchar, p_key_id integer, p_index_key_id integer,
    p_ci bytea, p_di bytea, p_phone bytea, p_name bytea, p_birth_date bytea,
    p_gender varchar, p_is_foreigner boolean, p_carrier varchar, p_provider varchar,
    p_certified_at timestamptz, p_kinds varchar[], p_index_keys integer[], p_digests bytea[],
    p_decision_subject varchar, p_decision_provider varchar, p_verdict varchar, p_policy_set varchar,
    p_identity_ref varchar, p_channel varchar, p_caller varchar, p_record bytea,
    p_policies varchar[], p_versions varchar[], p_outcomes varchar[], p_codes varchar[], p_enforced boolean[]
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
