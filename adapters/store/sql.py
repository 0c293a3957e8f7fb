"""The SQL store: VerificationStore, IdentityDirectory and IdentityVault on one database.

The hot path (prepare, the checks before the PortOne call, the identity lookup, the one write
transaction of a verification, and reading or erasing an identity) is plain SQL in async functions
over a `Transaction`, handed to the database's runner (runner.py: on SQLite the driver itself and
group commit; postgres.py: asyncpg's pool). Reads off the hot path use the async engine and, where it
earns its keep, the ORM. The same statements run on both databases.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from idgate.adapters.crypto import BlindIndexer, FieldCipher, same
from idgate.domain import (
    Certification,
    CertificationAlreadyUsed,
    Clock,
    IdentityAccess,
    IdentityAlreadyBound,
    PolicyDecision,
    PreparedRequest,
    Principal,
    Purged,
    RequestQuota,
    RequestState,
    Role,
    TooManyRequests,
    Verdict,
    VerifiedIdentity,
)

from .cases import INSERT_CASE, opened_case
from .database import Database
from .decision_log import LogEntry, append, decision_by_id
from .errors import ConstraintViolated, translated_errors
from .identities import INDEXED, IdentityCodec
from .keyring_check import VerifiedKeyring
from .postgres import PostgresRunner, lock_key
from .runner import Transaction, plain_sql
from .tables import (
    CONSUMED_CERTIFICATIONS,
    IDENTITIES,
    IDENTITY_ACCESS,
    IDENTITY_INDEX,
    PREPARED_REQUESTS,
    IdentityAccessRow,
    as_utc,
)

log = structlog.get_logger("idgate.store")


class SqlVerificationStore:
    """Implements VerificationStore, IdentityDirectory and IdentityVault on one database, so that
    consuming an imp_uid, binding the identity and appending the decision share one transaction."""

    def __init__(self, database: Database, keyring: VerifiedKeyring, clock: Clock) -> None:
        self._database = database
        self._engine = database.engine
        self._sql = database.runner
        self._keyring = keyring
        self._codec = IdentityCodec(FieldCipher(keyring), BlindIndexer(keyring))
        self._clock = clock

    async def ping(self) -> None:
        """One statement through the connections verifications use."""
        await self._sql.read(lambda sql: sql.first("SELECT 1", {}))

    async def check_keyring(self) -> None:
        """Raise KeyringMismatch (or KeyringUnavailable) unless the keyring fits the stored identities."""
        await self._keyring.refresh()

    def _session(self) -> AsyncSession:
        return AsyncSession(self._engine, expire_on_commit=False)

    # ---- VerificationStore --------------------------------------------------------------------
    async def save_prepared_request(
        self, request: PreparedRequest, *, quota: RequestQuota | None = None
    ) -> None:
        values = {
            "merchant_uid": request.merchant_uid,
            "subject": request.subject,
            "created_at": request.created_at,
            "expires_at": request.expires_at,
        }
        counted = None
        if quota is not None:
            await self._keyring.refresh()  # the client's digest is keyed
            window_start, retry_after = quota.window_at(request.created_at)
            counted = {
                "bucket": self._codec.indexer.pseudonym("prepare", quota.client)[:64],
                "window_start": window_start,
            }

        async def save(sql: Transaction) -> None:
            if quota is not None and counted is not None:
                row = await sql.first(_COUNT_REQUEST, counted)
                if row is not None and row[0] > quota.limit:
                    raise TooManyRequests(
                        f"this address prepared {quota.limit} verifications within "
                        f"{int(quota.window.total_seconds())} s; wait {retry_after} s and try again.",
                        retry_after_seconds=retry_after,
                    )
            await sql.execute(_INSERT_PREPARED, values)

        await self._sql.write(save)

    async def find_prepared_request(self, merchant_uid: str) -> PreparedRequest | None:
        return (await self.request_state("", merchant_uid)).prepared

    async def is_consumed(self, imp_uid: str) -> bool:
        return (await self.request_state(imp_uid, None)).consumed

    async def request_state(self, imp_uid: str, merchant_uid: str | None) -> RequestState:
        async def state(sql: Transaction) -> Any:
            return await sql.first(_REQUEST_STATE, {"imp_uid": imp_uid, "merchant_uid": merchant_uid})

        row = await self._sql.read(state)
        prepared = None
        if row is not None and row.merchant_uid is not None and row.used_at is None:
            prepared = PreparedRequest(
                merchant_uid=row.merchant_uid,
                subject=row.subject,
                created_at=as_utc(row.created_at),
                expires_at=as_utc(row.expires_at),
            )
        return RequestState(consumed=row is not None and row.consumed is not None, prepared=prepared)

    async def record_verification(
        self,
        *,
        decision: PolicyDecision,
        certification: Certification,
        prepared_merchant_uid: str | None,
    ) -> None:
        binds = decision.verdict is Verdict.ALLOW and decision.subject is not None
        opens_case = decision.verdict is Verdict.REVIEW and decision.subject is not None
        identity: dict[str, Any] | None = None
        entries: list[dict[str, object]] = []
        await self._keyring.refresh()  # the log's identity_ref is keyed, and so is an identity's storage
        entry = LogEntry.of(decision, self._codec.identity_ref(certification))
        if binds and decision.subject is not None:
            # Encrypted and indexed before the transaction begins, so it holds its locks briefly.
            identity = self._codec.new_row(decision.subject, certification, decision.decided_at)
            values = {"ci": certification.ci, "di": certification.di, "phone": certification.phone}
            entries = list(self._codec.index_entries(identity["id"], values))
        # A review keeps the identity with the case it opens, sealed the same way, until it is resolved.
        case = opened_case(self._codec, decision, certification) if opens_case else None
        rows = _VerificationRows(entry, prepared_merchant_uid, identity, entries, case)
        if isinstance(self._sql, PostgresRunner):
            await self._sql.autocommit(rows.in_one_call)
        else:
            await self._sql.write(rows.statement_by_statement)

    # ---- IdentityDirectory --------------------------------------------------------------------
    async def subjects_with_ci(self, ci: str) -> list[str]:
        return await self._subjects_with("ci", ci)

    async def subjects_with_di(self, di: str) -> list[str]:
        return await self._subjects_with("di", di)

    async def _subjects_with(self, kind: str, value: str) -> list[str]:
        await self._keyring.refresh()
        digests = self._codec.digests(kind, value)

        async def lookup(sql: Transaction) -> list[Any]:
            # One indexed lookup per index key (normally one; two while a new index key is rolled out).
            found = {}
            for key_id, digest in digests.items():
                for row in await sql.all(_SUBJECTS_WITH[kind], {"index_key_id": key_id, "digest": digest}):
                    found[row.id] = row
            return list(found.values())

        rows = await self._sql.read(lookup)
        wanted = self._codec.canonical(kind, value)
        # The digest only points; the decrypted value decides, so a forged index row cannot match.
        return sorted(
            row.subject
            for row in rows
            if (found := self._codec.plaintexts(row)[kind]) is not None
            and same(self._codec.canonical(kind, found), wanted)
        )

    # ---- IdentityVault ------------------------------------------------------------------------
    async def read_identity(self, subject: str, accessor: Principal) -> VerifiedIdentity | None:
        await self._keyring.refresh()

        async def read(sql: Transaction) -> VerifiedIdentity | None:  # records the read with it
            row = await sql.first(_IDENTITY, {"subject": subject})
            if row is None:
                return None
            identity = self._codec.identity(row)
            await sql.execute(_INSERT_ACCESS, self._access(accessor, "read", subject))
            return identity

        return await self._sql.write(read)

    async def erase_identity(self, subject: str, accessor: Principal) -> bool:
        async def erase(sql: Transaction) -> bool:
            row = await sql.first(_IDENTITY_OF, {"subject": subject})
            if row is None:
                return False
            await _delete_identity(sql, row.id)
            await sql.execute(_INSERT_ACCESS, self._access(accessor, "erase", subject))
            return True

        erased = await self._sql.write(erase)
        if erased:
            await self.checkpoint()
        return erased

    async def accesses(self, subject: str) -> list[IdentityAccess]:
        query = (
            select(IdentityAccessRow)
            .where(IdentityAccessRow.subject == subject)
            .order_by(col(IdentityAccessRow.id))
        )
        async with translated_errors(), self._session() as session:
            rows = (await session.exec(query)).all()
        return [
            IdentityAccess(at=r.at, actor=r.actor, role=Role(r.role), action=r.action, subject=r.subject)
            for r in rows
        ]

    def _access(self, accessor: Principal, action: str, subject: str) -> dict[str, object]:
        return {
            "at": self._clock.now(),
            "actor": accessor.name,
            "role": accessor.role.value,
            "action": action,
            "subject": subject,
        }

    async def checkpoint(self) -> None:
        await checkpoint_wal(self._database)

    async def purge(
        self, *, prepared_expired_before: datetime, consumed_before: datetime, counted_before: datetime
    ) -> Purged:
        counts = {}
        for table, statement, before in (
            ("prepared_requests", _PURGE_PREPARED, prepared_expired_before),
            ("consumed_certifications", _PURGE_CONSUMED, consumed_before),
            ("request_counts", _PURGE_COUNTS, counted_before),
        ):
            counts[table] = await self._purge(statement, before)
        return Purged(**counts)

    async def _purge(self, statement: str, before: datetime) -> int:
        """Batch after batch, each its own short transaction, so verifications never wait long."""
        params = {"before": before, "batch": PURGE_BATCH}

        async def one_batch(sql: Transaction) -> int:
            return await sql.execute(statement, params)

        removed = 0
        while True:
            done = await self._sql.write(one_batch)
            removed += done
            if done < PURGE_BATCH:
                return removed

    async def get_decision(self, decision_id: str) -> PolicyDecision | None:
        async def read(sql: Transaction) -> PolicyDecision | None:
            return await decision_by_id(sql, decision_id)

        return await self._sql.read(read)


async def checkpoint_wal(database: Database) -> None:
    """Fold SQLite's WAL into the database file and truncate it, so erased bytes leave the -wal."""
    if database.dialect == "sqlite":
        async with translated_errors(), database.engine.connect() as connection:
            # On the driver's connection: a checkpoint must run outside any transaction, and
            # SQLAlchemy would open one (BEGIN IMMEDIATE on maintenance engines) around it.
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            await driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")


_IMP_UID_USED = "this imp_uid was already used for a decision; start a new verification in the browser."
_MERCHANT_UID_USED = "this merchant_uid was already used by another verification; prepare a new one."
_PERSON_BOUND = "this person is already bound to another subject."


@dataclass(frozen=True, slots=True)
class _VerificationRows:
    """Everything one verification writes, made before its transaction: the consumption, the prepared
    request's use, the identity (allow with a subject only) with its index rows, the review case
    keeping it instead (review with a subject only), and the decision."""

    entry: LogEntry
    prepared_merchant_uid: str | None
    identity: dict[str, Any] | None
    index_entries: list[dict[str, object]]
    case: dict[str, Any] | None = None

    async def statement_by_statement(self, sql: Transaction) -> None:
        decision = self.entry.decision
        consumed = {
            "imp_uid": decision.imp_uid,
            "decision_id": decision.decision_id,
            "consumed_at": decision.decided_at,
        }
        try:
            # The consumption row goes first: its primary key is the lock that makes a second,
            # concurrent verification of the same imp_uid fail before anything else is written.
            await sql.execute(_INSERT_CONSUMED, consumed)
        except ConstraintViolated as exc:
            raise CertificationAlreadyUsed(_IMP_UID_USED) from exc
        if self.prepared_merchant_uid is not None:
            used = await sql.execute(
                _USE_PREPARED, {"prepared": self.prepared_merchant_uid, "at": decision.decided_at}
            )
            if used != 1:
                raise CertificationAlreadyUsed(_MERCHANT_UID_USED)
        if self.identity is not None:
            await bind_identity(sql, self.identity, self.index_entries)
        if self.case is not None:
            await sql.execute(INSERT_CASE, self.case)
        await append(sql, self.entry)  # last: the log's head row is locked until the commit

    async def in_one_call(self, sql: Transaction) -> None:
        """The same writes as one call of the function revision 0006 installs on PostgreSQL. Only a
        review that opens a case passes the case's arguments; the others default to NULL."""
        entry, identity, entries = self.entry, self.identity or {}, self.index_entries
        decision, values, results = entry.decision, entry.columns(), entry.results(0)
        case = (
            {f"case_{column}": self.case[column] for column in _CASE_ARGUMENTS}
            if self.case is not None
            else {}
        )
        try:
            await sql.first(
                _RECORD_VERIFICATION_OPENING_CASE if case else _RECORD_VERIFICATION,
                {
                    "imp_uid": decision.imp_uid,
                    "decision_id": decision.decision_id,
                    "at": decision.decided_at,
                    "prepared": self.prepared_merchant_uid,
                    "lock": lock_key(f"subject:{identity['subject']}") if identity else None,
                    **{f"identity_{column}": identity.get(column) for column in _IDENTITY_ARGUMENTS},
                    "kinds": [e["kind"] for e in entries],
                    "index_keys": [e["index_key_id"] for e in entries],
                    "digests": [e["digest"] for e in entries],
                    **{f"decision_{column}": values[column] for column in _DECISION_ARGUMENTS},
                    # the rows as append writes them (NFC, like the record), so verify finds them copies
                    "policies": [r["policy"] for r in results],
                    "versions": [r["version"] for r in results],
                    "outcomes": [r["outcome"] for r in results],
                    "codes": [r["code"] for r in results],
                    "enforced": [r["enforced"] for r in results],
                    **case,
                },
            )
        except ConstraintViolated as exc:
            if exc.constraint == "consumed_certifications_pkey":
                raise CertificationAlreadyUsed(_IMP_UID_USED) from exc
            if exc.constraint == "prepared_request_used":
                raise CertificationAlreadyUsed(_MERCHANT_UID_USED) from exc
            if exc.constraint.startswith("uq_identity_index_"):
                raise IdentityAlreadyBound(_PERSON_BOUND) from exc
            raise


# The function's arguments after the first five, in its order (v0003_postgres_write.py).
_IDENTITY_ARGUMENTS = (
    "id", "subject", "key_id", "index_key_id", "ci", "di", "phone", "name", "birth_date",
    "gender", "is_foreigner", "carrier", "provider", "certified_at",
)  # fmt: skip
_DECISION_ARGUMENTS = (
    "subject",
    "provider",
    "verdict",
    "policy_set",
    "identity_ref",
    "channel",
    "caller",
    "record",
)
_RECORD_VERIFICATION = (
    "SELECT idgate_record_verification(:imp_uid, :decision_id, :at, :prepared, :lock, "
    + ", ".join(f":identity_{column}" for column in _IDENTITY_ARGUMENTS)
    + ", :kinds, :index_keys, :digests, "
    + ", ".join(f":decision_{column}" for column in _DECISION_ARGUMENTS)
    + ", :policies, :versions, :outcomes, :codes, :enforced)"
)
# The case's columns, the function's last arguments (v0006_review_cases.py), each defaulting to NULL.
_CASE_ARGUMENTS = (
    "key_id", "ci", "di", "phone", "name", "birth_date", "gender", "is_foreigner", "carrier", "certified_at",
)  # fmt: skip
_RECORD_VERIFICATION_OPENING_CASE = (
    _RECORD_VERIFICATION.removesuffix(")")
    + ", "
    + ", ".join(f":case_{column}" for column in _CASE_ARGUMENTS)
    + ")"
)


async def bind_identity(
    sql: Transaction, identity: dict[str, Any], index_entries: list[dict[str, object]]
) -> None:
    """Bind a sealed identity to its subject, replacing what the subject had: what an allow does, in a
    verification's transaction or in a review case's. IdentityAlreadyBound when the person is bound
    to another subject (the unique index on the digests decides, also against a concurrent bind)."""
    subject = identity["subject"]
    # Two bindings of one subject take turns from here: each replaces what the other bound.
    await sql.lock(f"subject:{subject}")
    previous = await sql.first(_IDENTITY_OF, {"subject": subject})
    if previous is not None:  # re-verification: the new identity replaces the old one
        await _delete_identity(sql, previous.id)
    await sql.execute(_INSERT_IDENTITY, identity)
    try:
        if index_entries:
            await sql.execute_many(_INSERT_INDEX, index_entries)
    except ConstraintViolated as exc:
        raise IdentityAlreadyBound(_PERSON_BOUND) from exc


async def _delete_identity(sql: Transaction, identity_id: str) -> None:
    # The identity row first: it is what a re-encryption batch locks, so a verification waits for the
    # batch here instead of holding index rows the batch is about to rewrite (a deadlock on
    # PostgreSQL). Its index rows go with it (ON DELETE CASCADE); the second DELETE makes sure.
    await sql.execute(_DELETE_IDENTITY, {"identity_id": identity_id})
    await sql.execute(_DELETE_INDEX, {"identity_id": identity_id})


def _insert(table: sa.Table, *, generated: tuple[str, ...] = ()) -> str:
    """INSERT of every column of `table` but those the database fills in itself."""
    return plain_sql(sa.insert(table), columns=[c.name for c in table.columns if c.name not in generated])


def _subjects_with(kind: str) -> str:
    # The kind is written into the statement, not bound: with `kind = ?`, SQLite cannot know at prepare
    # time whether the partial unique index on CI digests applies, and prepares the statement again on
    # every run to find out (measured: most of the lookup's cost).
    return plain_sql(
        sa.select(IDENTITIES)
        .join(IDENTITY_INDEX, IDENTITY_INDEX.c.identity_id == IDENTITIES.c.id)
        .where(
            IDENTITY_INDEX.c.kind == sa.literal_column(f"'{kind}'"),  # one of INDEXED, never input
            IDENTITY_INDEX.c.index_key_id == sa.bindparam("index_key_id"),
            IDENTITY_INDEX.c.digest == sa.bindparam("digest"),
        )
    )


# The hot path's SQL, built with Core from the tables in tables.py and run by the driver (runner.py).
_INSERT_PREPARED = _insert(PREPARED_REQUESTS, generated=("used_at",))  # set when it is used
# One row whatever exists: whether the imp_uid was consumed, and the prepared request (or NULLs).
_REQUEST_STATE = plain_sql(
    sa.select(
        sa.select(sa.literal_column("1"))
        .where(CONSUMED_CERTIFICATIONS.c.imp_uid == sa.bindparam("imp_uid"))
        .scalar_subquery()
        .label("consumed"),
        *PREPARED_REQUESTS.c,
    ).select_from(
        sa.select(sa.literal_column("1"))
        .subquery("one")
        .outerjoin(PREPARED_REQUESTS, PREPARED_REQUESTS.c.merchant_uid == sa.bindparam("merchant_uid"))
    )
)
_INSERT_CONSUMED = _insert(CONSUMED_CERTIFICATIONS)
_USE_PREPARED = plain_sql(
    sa.update(PREPARED_REQUESTS)
    .where(
        PREPARED_REQUESTS.c.merchant_uid == sa.bindparam("prepared"), PREPARED_REQUESTS.c.used_at.is_(None)
    )
    .values(used_at=sa.bindparam("at"))
)
_IDENTITY_OF = plain_sql(sa.select(IDENTITIES.c.id).where(IDENTITIES.c.subject == sa.bindparam("subject")))
_IDENTITY = plain_sql(sa.select(IDENTITIES).where(IDENTITIES.c.subject == sa.bindparam("subject")))
_SUBJECTS_WITH = {kind: _subjects_with(kind) for kind in INDEXED}
_INSERT_IDENTITY = _insert(IDENTITIES)
_INSERT_INDEX = _insert(IDENTITY_INDEX)
_INSERT_ACCESS = _insert(IDENTITY_ACCESS, generated=("id",))
_DELETE_INDEX = plain_sql(
    sa.delete(IDENTITY_INDEX).where(IDENTITY_INDEX.c.identity_id == sa.bindparam("identity_id"))
)
_DELETE_IDENTITY = plain_sql(sa.delete(IDENTITIES).where(IDENTITIES.c.id == sa.bindparam("identity_id")))
# Written out: SQLite and PostgreSQL spell an upsert with RETURNING alike, SQLAlchemy's two dialect
# constructs would only hide that.
_COUNT_REQUEST = (
    "INSERT INTO request_counts (bucket, window_start, count) VALUES (:bucket, :window_start, 1) "
    "ON CONFLICT (bucket, window_start) DO UPDATE SET count = request_counts.count + 1 RETURNING count"
)
PURGE_BATCH = 2000
# At most :batch rows a statement, oldest first by the indexed time; request counts are few (one row a
# client and window) and go at once.
_PURGE_PREPARED = (
    "DELETE FROM prepared_requests WHERE merchant_uid IN "
    "(SELECT merchant_uid FROM prepared_requests WHERE expires_at < :before LIMIT :batch)"
)
_PURGE_CONSUMED = (
    "DELETE FROM consumed_certifications WHERE imp_uid IN "
    "(SELECT imp_uid FROM consumed_certifications WHERE consumed_at < :before LIMIT :batch)"
)
_PURGE_COUNTS = "DELETE FROM request_counts WHERE window_start < :before"
