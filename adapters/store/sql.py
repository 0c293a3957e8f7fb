"""SQL implementation of the VerificationStore port (SQLite now; the schema is portable to PostgreSQL)."""

from __future__ import annotations

import os
import weakref
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa
import structlog
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from idgate.adapters.crypto import BlindIndexer, FieldCipher, same
from idgate.domain import (
    Certification,
    CertificationAlreadyUsed,
    Clock,
    ConfigurationError,
    IdentityAccess,
    IdentityAlreadyBound,
    Outcome,
    PolicyDecision,
    PolicyResult,
    PreparedRequest,
    Principal,
    Role,
    StoreUnavailable,
    Verdict,
    VerifiedIdentity,
)

from .errors import translated_errors
from .identities import IdentityCodec
from .keyring_check import VerifiedKeyring
from .tables import (
    ConsumedCertificationRow,
    DecisionRow,
    IdentityAccessRow,
    IdentityIndexRow,
    IdentityRow,
    PreparedRequestRow,
)

log = structlog.get_logger("idgate.store")


def create_engine(url: str, *, write_transactions: bool = False) -> AsyncEngine:
    """An async engine for `url`; SQLite files get WAL, a busy timeout and their directory created.

    With `write_transactions`, every SQLite transaction starts as BEGIN IMMEDIATE: it takes the write
    lock before its first read, so nothing can change between what a batch job reads and what it
    writes, and it never fails to upgrade a stale read snapshot (which SQLite refuses at once).
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigurationError(
            "database url is not a valid SQLAlchemy URL; use e.g. sqlite+aiosqlite:///.idgate/idgate.db"
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(parsed, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        if parsed.database and parsed.database != ":memory:":
            path = Path(parsed.database).absolute()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(
                    f"cannot create the folder for the SQLite database ({exc.strerror}); fix [database] url."
                ) from exc
            event.listen(engine.sync_engine, "checkout", SqliteFileWatch(path).check)
        if write_transactions:
            event.listen(engine.sync_engine, "connect", _driver_autocommit)
            event.listen(engine.sync_engine, "begin", _begin_immediate)
        return engine
    return create_async_engine(parsed, pool_pre_ping=True, hide_parameters=True)


class SqliteFileWatch:
    """Refuses to hand out a connection once the database file was deleted or replaced.

    SQLite keeps writing to a file that was unlinked under it, and a new connection would silently
    create an empty database in its place: either way acknowledged decisions would vanish at the next
    restart. The watch holds a descriptor of the file it first saw (so its inode cannot be reused by a
    replacement) and, at every checkout, checks that the file still has a name and that the path still
    leads to it: an fstat() and a stat().
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._descriptor: int | None = None

    def check(self, _dbapi_connection: object, _record: object, _proxy: object) -> None:
        if self._descriptor is None:
            try:
                self._descriptor = os.open(self._path, os.O_RDONLY)
            except FileNotFoundError:
                return  # not created yet: the connection being made creates it
            weakref.finalize(self, os.close, self._descriptor)
            return
        ours = os.fstat(self._descriptor)
        try:
            found = os.stat(self._path)
        except FileNotFoundError:
            found = None
        if ours.st_nlink == 0 or found is None or (found.st_dev, found.st_ino) != (ours.st_dev, ours.st_ino):
            log.error("database_file_replaced", present=found is not None)
            raise StoreUnavailable(
                "the SQLite database file was deleted or replaced while idgate was running; nothing "
                "more is written. Restore the file from a backup, then restart idgate."
            )


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted identities must not linger in free pages; Debian's build defaults to it, others may not.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _driver_autocommit(dbapi_connection: Any, _record: object) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event emits BEGIN instead


def _begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class SqlVerificationStore:
    """Implements VerificationStore, IdentityDirectory and IdentityVault on one database, so that
    consuming an imp_uid, binding the identity and appending the decision share one transaction."""

    def __init__(self, engine: AsyncEngine, keyring: VerifiedKeyring, clock: Clock) -> None:
        self._engine = engine
        self._keyring = keyring
        self._codec = IdentityCodec(FieldCipher(keyring), BlindIndexer(keyring))
        self._clock = clock

    @staticmethod
    async def create_schema_on(engine: AsyncEngine) -> None:
        async with translated_errors(), engine.begin() as connection:
            await connection.run_sync(SQLModel.metadata.create_all)

    async def ping(self) -> None:
        async with translated_errors(), self._engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))

    async def check_keyring(self) -> None:
        """Raise KeyringMismatch (or KeyringUnavailable) unless the keyring fits the stored identities."""
        await self._keyring.refresh()

    def _session(self) -> AsyncSession:
        return AsyncSession(self._engine, expire_on_commit=False)

    async def save_prepared_request(self, request: PreparedRequest) -> None:
        async with translated_errors(), self._session() as session:
            session.add(
                PreparedRequestRow(
                    merchant_uid=request.merchant_uid,
                    subject=request.subject,
                    created_at=request.created_at,
                    expires_at=request.expires_at,
                )
            )
            await session.commit()

    async def find_prepared_request(self, merchant_uid: str) -> PreparedRequest | None:
        async with translated_errors(), self._session() as session:
            row = await session.get(PreparedRequestRow, merchant_uid)
        if row is None or row.used_at is not None:
            return None
        return PreparedRequest(
            merchant_uid=row.merchant_uid,
            subject=row.subject,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )

    async def is_consumed(self, imp_uid: str) -> bool:
        async with translated_errors(), self._session() as session:
            return await session.get(ConsumedCertificationRow, imp_uid) is not None

    async def record_verification(
        self,
        *,
        decision: PolicyDecision,
        certification: Certification,
        prepared_merchant_uid: str | None,
    ) -> None:
        if decision.verdict is Verdict.ALLOW and decision.subject is not None:
            await self._keyring.refresh()
        async with translated_errors(), self._session() as session:
            try:
                # The consumption row goes first: its primary key is the lock that makes a second,
                # concurrent verification of the same imp_uid fail before anything else is written.
                session.add(
                    ConsumedCertificationRow(
                        imp_uid=decision.imp_uid,
                        decision_id=decision.decision_id,
                        consumed_at=decision.decided_at,
                    )
                )
                await session.flush()
            except IntegrityError as exc:
                await session.rollback()
                raise CertificationAlreadyUsed(
                    "this imp_uid was already used for a decision; start a new verification in the browser."
                ) from exc
            if prepared_merchant_uid is not None:
                await self._use_prepared(session, prepared_merchant_uid, decision.decided_at)
            if decision.verdict is Verdict.ALLOW and decision.subject is not None:
                await self._bind_identity(session, decision.subject, certification, decision.decided_at)
            session.add(_decision_row(decision))
            await session.commit()

    async def _bind_identity(
        self, session: AsyncSession, subject: str, certification: Certification, at: datetime
    ) -> None:
        previous = (await session.exec(select(IdentityRow).where(IdentityRow.subject == subject))).first()
        if previous is not None:  # re-verification: the new identity replaces the old one
            await _delete_identity(session, previous.id)
        row = self._codec.new_row(subject, certification, at)
        session.add(row)
        await session.flush()
        entries = list(
            self._codec.index_entries(
                row.id, {"ci": certification.ci, "di": certification.di, "phone": certification.phone}
            )
        )
        try:
            if entries:
                await session.exec(sa.insert(IdentityIndexRow), params=entries)
        except IntegrityError as exc:
            await session.rollback()
            raise IdentityAlreadyBound("this person is already bound to another subject.") from exc

    # ---- IdentityDirectory --------------------------------------------------------------------
    async def subjects_with_ci(self, ci: str) -> list[str]:
        return await self._subjects_with("ci", ci)

    async def subjects_with_di(self, di: str) -> list[str]:
        return await self._subjects_with("di", di)

    async def _subjects_with(self, kind: str, value: str) -> list[str]:
        await self._keyring.refresh()
        digests = self._codec.digests(kind, value)
        matches = sa.or_(
            *(
                sa.and_(col(IdentityIndexRow.index_key_id) == key_id, col(IdentityIndexRow.digest) == digest)
                for key_id, digest in digests.items()
            )
        )
        query = (
            select(IdentityRow)
            .join(IdentityIndexRow, col(IdentityIndexRow.identity_id) == col(IdentityRow.id))
            .where(IdentityIndexRow.kind == kind, matches)
            .distinct()
        )
        async with translated_errors(), self._session() as session:
            rows = (await session.exec(query)).all()
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
        async with translated_errors(), self._session() as session:
            row = (await session.exec(select(IdentityRow).where(IdentityRow.subject == subject))).first()
            if row is None:
                return None
            identity = self._codec.identity(row)
            session.add(self._access(accessor, "read", subject))
            await session.commit()
        return identity

    async def erase_identity(self, subject: str, accessor: Principal) -> bool:
        async with translated_errors(), self._session() as session:
            row = (await session.exec(select(IdentityRow).where(IdentityRow.subject == subject))).first()
            if row is None:
                return False
            await _delete_identity(session, row.id)
            session.add(self._access(accessor, "erase", subject))
            await session.commit()
        await self.checkpoint()
        return True

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

    def _access(self, accessor: Principal, action: str, subject: str) -> IdentityAccessRow:
        return IdentityAccessRow(
            at=self._clock.now(),
            actor=accessor.name,
            role=accessor.role.value,
            action=action,
            subject=subject,
        )

    async def checkpoint(self) -> None:
        """Fold SQLite's WAL into the database file and truncate it, so erased bytes leave the -wal."""
        if self._engine.dialect.name == "sqlite":
            async with translated_errors(), self._engine.connect() as connection:
                # On the driver's connection: a checkpoint must run outside any transaction, and
                # SQLAlchemy would open one (BEGIN IMMEDIATE on maintenance engines) around it.
                raw = await connection.get_raw_connection()
                driver: Any = raw.driver_connection
                await driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @staticmethod
    async def _use_prepared(session: AsyncSession, merchant_uid: str, at: datetime) -> None:
        used = await session.exec(
            sa.update(PreparedRequestRow)
            .where(col(PreparedRequestRow.merchant_uid) == merchant_uid)
            .where(col(PreparedRequestRow.used_at).is_(None))
            .values(used_at=at)
        )
        if used.rowcount != 1:
            await session.rollback()
            raise CertificationAlreadyUsed(
                "this merchant_uid was already used by another verification; prepare a new one."
            )

    async def get_decision(self, decision_id: str) -> PolicyDecision | None:
        async with translated_errors(), self._session() as session:
            row = (
                await session.exec(select(DecisionRow).where(DecisionRow.decision_id == decision_id))
            ).first()
        return None if row is None else _decision_from_row(row)


async def _delete_identity(session: AsyncSession, identity_id: str) -> None:
    await session.exec(sa.delete(IdentityIndexRow).where(col(IdentityIndexRow.identity_id) == identity_id))
    await session.exec(sa.delete(IdentityRow).where(col(IdentityRow.id) == identity_id))


class _ResultRecord(msgspec.Struct, frozen=True):
    policy: str
    version: str
    outcome: str
    code: str
    message: str
    enforced: bool


def _decision_row(decision: PolicyDecision) -> DecisionRow:
    results = [
        _ResultRecord(r.policy, r.version, r.outcome.value, r.code, r.message, r.enforced)
        for r in decision.results
    ]
    return DecisionRow(
        decision_id=decision.decision_id,
        imp_uid=decision.imp_uid,
        subject=decision.subject,
        provider=decision.provider,
        verdict=decision.verdict.value,
        results=msgspec.json.encode(results).decode(),
        policy_set=decision.policy_set,
        decided_at=decision.decided_at,
    )


def _decision_from_row(row: DecisionRow) -> PolicyDecision:
    records = msgspec.json.decode(row.results, type=list[_ResultRecord])
    return PolicyDecision(
        decision_id=row.decision_id,
        imp_uid=row.imp_uid,
        subject=row.subject,
        verdict=Verdict(row.verdict),
        results=tuple(
            PolicyResult(
                policy=r.policy,
                version=r.version,
                outcome=Outcome(r.outcome),
                code=r.code,
                message=r.message,
                enforced=r.enforced,
            )
            for r in records
        ),
        decided_at=row.decided_at,
        policy_set=row.policy_set,
        provider=row.provider,
    )
