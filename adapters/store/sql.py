"""The SQL store: VerificationStore, IdentityDirectory and IdentityVault on one database.

The hot path (prepare, the checks before the PortOne call, the identity lookup, the one write
transaction of a verification, and reading or erasing an identity) is plain SQL in functions over a
`Transaction`, handed to a runner (see runner.py: on SQLite, the driver itself and group commit).
Reads off the hot path still use the async engine and, where it earns its keep, the ORM.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa
import structlog
from sqlalchemy import event
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
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

from .errors import ConstraintViolated, translated_errors
from .identities import INDEXED, IdentityCodec
from .keyring_check import VerifiedKeyring
from .runner import AsyncEngineRunner, SqliteRunner, SqlRunner, Transaction
from .tables import (
    CONSUMED_CERTIFICATIONS,
    DECISIONS,
    IDENTITIES,
    IDENTITY_ACCESS,
    IDENTITY_INDEX,
    PREPARED_REQUESTS,
    DecisionRow,
    IdentityAccessRow,
    as_utc,
)

log = structlog.get_logger("idgate.store")
SQLITE_CONNECTIONS = 16


def create_engine(url: str, *, write_transactions: bool = False, synchronous: str = "full") -> AsyncEngine:
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
        # A fixed set of long-lived connections (each is a thread in aiosqlite): overflow connections
        # would be opened and closed again under load, each with a new thread and its PRAGMAs.
        engine = create_async_engine(
            parsed,
            connect_args={"timeout": 30},
            hide_parameters=True,
            pool_size=SQLITE_CONNECTIONS,
            max_overflow=0,
        )
        _watch_sqlite(engine.sync_engine, parsed, synchronous)
        if write_transactions:
            event.listen(engine.sync_engine, "connect", _driver_autocommit)
            event.listen(engine.sync_engine, "begin", _begin_immediate)
        return engine
    return create_async_engine(parsed, pool_pre_ping=True, hide_parameters=True)


def sqlite_runner(url: sa.URL, synchronous: str = "full") -> SqliteRunner | None:
    """A SqliteRunner on the SQLite file of `url`, or None for other databases."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database).absolute()
    pragmas = sqlite_pragmas(synchronous)
    return SqliteRunner(
        path,
        prepare=lambda connection: pragmas(connection, None),
        check=SqliteFileWatch(path).check,
    )


def _watch_sqlite(engine: sa.Engine, url: sa.URL, synchronous: str) -> None:
    """Every SQLite connection gets the PRAGMAs; a file database is also watched for replacement."""
    event.listen(engine, "connect", sqlite_pragmas(synchronous))
    if url.database and url.database != ":memory:":
        path = Path(url.database).absolute()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the folder for the SQLite database ({exc.strerror}); fix [database] url."
            ) from exc
        watch = SqliteFileWatch(path)
        event.listen(engine, "checkout", lambda _connection, _record, _proxy: watch.check())


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

    def check(self) -> None:
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


SYNCHRONOUS = ("full", "normal")


def sqlite_pragmas(synchronous: str) -> Callable[[Any, object], None]:
    """The PRAGMAs every SQLite connection gets.

    `synchronous`: "full" syncs the WAL to disk at every commit, so an acknowledged decision survives
    a power cut; "normal" syncs only at checkpoints, so it survives a crash of idgate (kill -9) but a
    power cut can lose the last commits (consumed imp_uids among them). See docs/performance.md.
    """
    if synchronous not in SYNCHRONOUS:
        raise ConfigurationError(f"database sqlite_synchronous must be one of {', '.join(SYNCHRONOUS)}.")

    def apply(dbapi_connection: Any, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        # Deleted identities must not linger in free pages; Debian's build defaults to it, others may not.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    return apply


def _driver_autocommit(dbapi_connection: Any, _record: object) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event emits BEGIN instead


def _begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class SqlVerificationStore:
    """Implements VerificationStore, IdentityDirectory and IdentityVault on one database, so that
    consuming an imp_uid, binding the identity and appending the decision share one transaction."""

    def __init__(
        self, engine: AsyncEngine, keyring: VerifiedKeyring, clock: Clock, *, sqlite_synchronous: str = "full"
    ) -> None:
        self._engine = engine
        self._keyring = keyring
        self._codec = IdentityCodec(FieldCipher(keyring), BlindIndexer(keyring))
        self._clock = clock
        self._sql: SqlRunner = sqlite_runner(engine.url, sqlite_synchronous) or AsyncEngineRunner(engine)

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

    async def aclose(self) -> None:
        await self._sql.aclose()

    # ---- VerificationStore --------------------------------------------------------------------
    async def save_prepared_request(self, request: PreparedRequest) -> None:
        values = {
            "merchant_uid": request.merchant_uid,
            "subject": request.subject,
            "created_at": request.created_at,
            "expires_at": request.expires_at,
        }
        await self._sql.write(lambda sql: sql.execute(_INSERT_PREPARED, values))

    async def find_prepared_request(self, merchant_uid: str) -> PreparedRequest | None:
        row = await self._sql.read(lambda sql: sql.first(_PREPARED, {"merchant_uid": merchant_uid}))
        if row is None or row.used_at is not None:
            return None
        return PreparedRequest(
            merchant_uid=row.merchant_uid,
            subject=row.subject,
            created_at=as_utc(row.created_at),
            expires_at=as_utc(row.expires_at),
        )

    async def is_consumed(self, imp_uid: str) -> bool:
        return await self._sql.read(lambda sql: sql.first(_CONSUMED, {"imp_uid": imp_uid}) is not None)

    async def record_verification(
        self,
        *,
        decision: PolicyDecision,
        certification: Certification,
        prepared_merchant_uid: str | None,
    ) -> None:
        binds = decision.verdict is Verdict.ALLOW and decision.subject is not None
        if binds:
            await self._keyring.refresh()

        def record(sql: Transaction) -> None:
            try:
                # The consumption row goes first: its primary key is the lock that makes a second,
                # concurrent verification of the same imp_uid fail before anything else is written.
                sql.execute(
                    _INSERT_CONSUMED,
                    {
                        "imp_uid": decision.imp_uid,
                        "decision_id": decision.decision_id,
                        "consumed_at": decision.decided_at,
                    },
                )
            except ConstraintViolated as exc:
                raise CertificationAlreadyUsed(
                    "this imp_uid was already used for a decision; start a new verification in the browser."
                ) from exc
            if prepared_merchant_uid is not None:
                used = sql.execute(
                    _USE_PREPARED, {"prepared": prepared_merchant_uid, "at": decision.decided_at}
                )
                if used != 1:
                    raise CertificationAlreadyUsed(
                        "this merchant_uid was already used by another verification; prepare a new one."
                    )
            if binds and decision.subject is not None:
                self._bind_identity(sql, decision.subject, certification, decision.decided_at)
            sql.execute(_INSERT_DECISION, _decision_values(decision))

        await self._sql.write(record)

    def _bind_identity(
        self, sql: Transaction, subject: str, certification: Certification, at: datetime
    ) -> None:
        previous = sql.first(_IDENTITY_OF, {"subject": subject})
        if previous is not None:  # re-verification: the new identity replaces the old one
            _delete_identity(sql, previous.id)
        row = self._codec.new_row(subject, certification, at)
        sql.execute(_INSERT_IDENTITY, row)
        entries = list(
            self._codec.index_entries(
                row["id"], {"ci": certification.ci, "di": certification.di, "phone": certification.phone}
            )
        )
        try:
            if entries:
                sql.execute_many(_INSERT_INDEX, entries)
        except ConstraintViolated as exc:
            raise IdentityAlreadyBound("this person is already bound to another subject.") from exc

    # ---- IdentityDirectory --------------------------------------------------------------------
    async def subjects_with_ci(self, ci: str) -> list[str]:
        return await self._subjects_with("ci", ci)

    async def subjects_with_di(self, di: str) -> list[str]:
        return await self._subjects_with("di", di)

    async def _subjects_with(self, kind: str, value: str) -> list[str]:
        await self._keyring.refresh()
        digests = self._codec.digests(kind, value)

        def lookup(sql: Transaction) -> list[Any]:
            # One indexed lookup per index key (normally one; two while a new index key is rolled out).
            found = {}
            for key_id, digest in digests.items():
                for row in sql.all(_SUBJECTS_WITH[kind], {"index_key_id": key_id, "digest": digest}):
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

        def read(sql: Transaction) -> VerifiedIdentity | None:  # records the read with it
            row = sql.first(_IDENTITY, {"subject": subject})
            if row is None:
                return None
            identity = self._codec.identity(row)
            sql.execute(_INSERT_ACCESS, self._access(accessor, "read", subject))
            return identity

        return await self._sql.write(read)

    async def erase_identity(self, subject: str, accessor: Principal) -> bool:
        def erase(sql: Transaction) -> bool:
            row = sql.first(_IDENTITY_OF, {"subject": subject})
            if row is None:
                return False
            _delete_identity(sql, row.id)
            sql.execute(_INSERT_ACCESS, self._access(accessor, "erase", subject))
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
        """Fold SQLite's WAL into the database file and truncate it, so erased bytes leave the -wal."""
        if self._engine.dialect.name == "sqlite":
            async with translated_errors(), self._engine.connect() as connection:
                # On the driver's connection: a checkpoint must run outside any transaction, and
                # SQLAlchemy would open one (BEGIN IMMEDIATE on maintenance engines) around it.
                raw = await connection.get_raw_connection()
                driver: Any = raw.driver_connection
                await driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def get_decision(self, decision_id: str) -> PolicyDecision | None:
        async with translated_errors(), self._session() as session:
            row = (
                await session.exec(select(DecisionRow).where(DecisionRow.decision_id == decision_id))
            ).first()
        return None if row is None else _decision_from_row(row)


def _delete_identity(sql: Transaction, identity_id: str) -> None:
    sql.execute(_DELETE_INDEX, {"identity_id": identity_id})
    sql.execute(_DELETE_IDENTITY, {"identity_id": identity_id})


def _plain(statement: sa.ClauseElement, *, columns: list[str] | None = None) -> str:
    """A Core statement as plain SQL with `:name` parameters, compiled once at import."""
    return str(statement.compile(dialect=_NAMED_PARAMETERS, column_keys=columns))


def _insert(table: sa.Table, *, generated: tuple[str, ...] = ()) -> str:
    """INSERT of every column of `table` but those the database fills in itself."""
    return _plain(sa.insert(table), columns=[c.name for c in table.columns if c.name not in generated])


_NAMED_PARAMETERS = sqlite_dialect(paramstyle="named")


def _subjects_with(kind: str) -> str:
    # The kind is written into the statement, not bound: with `kind = ?`, SQLite cannot know at prepare
    # time whether the partial unique index on CI digests applies, and prepares the statement again on
    # every run to find out (measured: most of the lookup's cost).
    return _plain(
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
_PREPARED = _plain(
    sa.select(PREPARED_REQUESTS).where(PREPARED_REQUESTS.c.merchant_uid == sa.bindparam("merchant_uid"))
)
_CONSUMED = _plain(
    sa.select(sa.literal_column("1")).where(CONSUMED_CERTIFICATIONS.c.imp_uid == sa.bindparam("imp_uid"))
)
_INSERT_CONSUMED = _insert(CONSUMED_CERTIFICATIONS)
_USE_PREPARED = _plain(
    sa.update(PREPARED_REQUESTS)
    .where(
        PREPARED_REQUESTS.c.merchant_uid == sa.bindparam("prepared"), PREPARED_REQUESTS.c.used_at.is_(None)
    )
    .values(used_at=sa.bindparam("at"))
)
_IDENTITY_OF = _plain(sa.select(IDENTITIES.c.id).where(IDENTITIES.c.subject == sa.bindparam("subject")))
_IDENTITY = _plain(sa.select(IDENTITIES).where(IDENTITIES.c.subject == sa.bindparam("subject")))
_SUBJECTS_WITH = {kind: _subjects_with(kind) for kind in INDEXED}
_INSERT_IDENTITY = _insert(IDENTITIES)
_INSERT_INDEX = _insert(IDENTITY_INDEX)
_INSERT_DECISION = _insert(DECISIONS, generated=("seq",))
_INSERT_ACCESS = _insert(IDENTITY_ACCESS, generated=("id",))
_DELETE_INDEX = _plain(
    sa.delete(IDENTITY_INDEX).where(IDENTITY_INDEX.c.identity_id == sa.bindparam("identity_id"))
)
_DELETE_IDENTITY = _plain(sa.delete(IDENTITIES).where(IDENTITIES.c.id == sa.bindparam("identity_id")))


class _ResultRecord(msgspec.Struct, frozen=True):
    policy: str
    version: str
    outcome: str
    code: str
    message: str
    enforced: bool


def _decision_values(decision: PolicyDecision) -> dict[str, object]:
    results = [
        _ResultRecord(r.policy, r.version, r.outcome.value, r.code, r.message, r.enforced)
        for r in decision.results
    ]
    return {
        "decision_id": decision.decision_id,
        "imp_uid": decision.imp_uid,
        "subject": decision.subject,
        "provider": decision.provider,
        "verdict": decision.verdict.value,
        "results": msgspec.json.encode(results).decode(),
        "policy_set": decision.policy_set,
        "decided_at": decision.decided_at,
    }


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
