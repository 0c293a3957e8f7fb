"""The composition root: the one place that knows every concrete class and wires them to the ports.

Nothing is built at import time. The HTTP app, the CLI and the tests all call `bootstrap(settings,
...)`; every port is an optional argument, and only the ports not passed in are built from the
settings. The database is opened only when a SQL adapter is built, so unit tests that pass fakes for
the store and the tokens touch no file, no keyring and no network.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from idgate.adapters.clock import SystemClock
from idgate.adapters.crypto import KeyringSource, SigningKeyFile
from idgate.adapters.portone import PortOneHttp, PortOneV1Credentials, PortOneV1Provider, RetryPolicy
from idgate.adapters.store import (
    Database,
    DatabaseOptions,
    KeyMaintenance,
    SqlAccessTokens,
    SqlDecisionLog,
    SqlReviewCases,
    SqlVerificationStore,
    VerifiedKeyring,
    open_database,
    parse_url,
    schema,
)
from idgate.adapters.store.blocklist import SqlBlocklist
from idgate.adapters.telemetry import VERIFICATIONS
from idgate.domain import (
    AccessTokens,
    BarredPeople,
    CertificationProvider,
    Channel,
    CheckpointSigner,
    Claims,
    Clock,
    ConfigurationError,
    DecisionLog,
    IdentityDirectory,
    IdentityVault,
    IdgateError,
    PolicyDecision,
    PolicyEvaluator,
    PreparedRequest,
    Purged,
    ReviewCases,
    VerificationHistory,
    VerificationStore,
    auditing,
    services,
)
from idgate.domain.audit import Checkpoint
from idgate.domain.blocklist import Blocklist
from idgate.domain.reviews import ReviewRules, expire_cases
from idgate.domain.services import Retention, VerificationRules
from idgate.policies.engine import PluginPolicyEvaluator, configure, load_catalog, new_plugin_manager

from .settings import Settings

ReadinessCheck = Callable[[], Awaitable[None]]


class IdentityStore(VerificationStore, IdentityDirectory, IdentityVault, Protocol):
    """One store that serves all three ports, so that verification and binding share a transaction."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Container:
    """Every port, wired; the use cases below are what the entrypoints call."""

    settings: Settings
    provider: CertificationProvider
    store: VerificationStore
    identities: IdentityDirectory
    vault: IdentityVault
    tokens: AccessTokens
    policies: PolicyEvaluator
    clock: Clock
    rules: VerificationRules
    retention: Retention
    # The decision log, and the key that signs its checkpoints: built with the SQL store; None when a
    # test passes a store of its own and no log.
    log: DecisionLog | None = None
    signer: CheckpointSigner | None = None
    # What the rate and blocklist policies ask (None where the store offers neither).
    history: VerificationHistory | None = None
    barred: BarredPeople | None = None
    # The cases review verdicts open: built with the SQL store, like the log.
    reviews: ReviewCases | None = None
    review_rules: ReviewRules = field(default_factory=ReviewRules)
    readiness: Mapping[str, ReadinessCheck] = field(default_factory=dict)

    def decision_log(self) -> tuple[DecisionLog, CheckpointSigner]:
        if self.log is None or self.signer is None:
            raise ConfigurationError("this idgate was started without its decision log.")
        return self.log, self.signer

    def review_cases(self) -> ReviewCases:
        if self.reviews is None:
            raise ConfigurationError("this idgate was started without its review cases.")
        return self.reviews

    async def expire_reviews(self) -> int:
        return await expire_cases(cases=self.review_cases(), clock=self.clock, rules=self.review_rules)

    async def checkpoint(self) -> Checkpoint | None:
        log, signer = self.decision_log()
        return await auditing.make_checkpoint(log=log, signer=signer, clock=self.clock)

    async def prepare(self, subject: str | None, client: str | None = None) -> PreparedRequest:
        return await services.prepare(
            subject=subject, client=client, store=self.store, clock=self.clock, rules=self.rules
        )

    async def purge(self) -> Purged:
        return await services.purge_expired(store=self.store, clock=self.clock, retention=self.retention)

    async def verify(
        self,
        imp_uid: str,
        merchant_uid: str | None,
        subject: str | None,
        *,
        channel: Channel = Channel.HTTP,
        caller: str | None = None,
        claims: Claims | None = None,
    ) -> PolicyDecision:
        try:
            decision = await services.verify(
                imp_uid=imp_uid,
                merchant_uid=merchant_uid,
                subject=subject,
                provider=self.provider,
                store=self.store,
                identities=self.identities,
                policies=self.policies,
                clock=self.clock,
                rules=self.rules,
                channel=channel,
                caller=caller,
                claims=claims,
                history=self.history,
                barred=self.barred,
            )
        except IdgateError as error:
            VERIFICATIONS.labels("error", error.code).inc()
            raise
        VERIFICATIONS.labels(decision.verdict.value, "").inc()
        return decision


@contextlib.asynccontextmanager
async def bootstrap(
    settings: Settings,
    *,
    provider: CertificationProvider | None = None,
    store: IdentityStore | None = None,
    tokens: AccessTokens | None = None,
    policies: PolicyEvaluator | None = None,
    clock: Clock | None = None,
    log: DecisionLog | None = None,
    signer: CheckpointSigner | None = None,
    signing: bool = True,
    history: VerificationHistory | None = None,
    barred: BarredPeople | None = None,
    review_cases: ReviewCases | None = None,
) -> AsyncIterator[Container]:
    """Build every port not passed in, yield the container, and close what was opened.

    Refuses to start (ConfigurationError, KeyringMismatch …) on anything that would fail the first
    request: a wrong policy option, no PortOne credentials, a missing keyring or one that does not fit
    the stored identities, or (unless `signing` is False: commands that append decisions but never sign
    a checkpoint, like `idgate verify`) a missing checkpoint signing key.
    """
    readiness: dict[str, ReadinessCheck] = {}
    clock = clock or SystemClock()
    if provider is None:
        require_credentials(settings)  # the first thing a new installation is missing: say so first
    async with contextlib.AsyncExitStack() as stack:
        if policies is None:
            policies = build_policies(settings)
        if store is None or tokens is None:
            db = await stack.enter_async_context(database(settings))
            engine = db.engine
            if store is None:
                keyring = verified_keyring(settings, engine, clock)
                sql_store = SqlVerificationStore(db, keyring, clock)
                await sql_store.check_keyring()
                readiness["store"] = sql_store.ping
                readiness["keyring"] = sql_store.check_keyring
                store = sql_store
                sql_log = SqlDecisionLog(db, keyring, clock)
                log = log or sql_log
                history = history or sql_log
                barred = barred or SqlBlocklist(db, keyring, clock)
                review_cases = review_cases or SqlReviewCases(db, keyring, clock)
            if tokens is None:
                tokens = SqlAccessTokens(engine, clock)
        if log is not None and signer is None and signing:
            signer = checkpoint_signer(settings)
        if provider is None:
            portone = await stack.enter_async_context(portone_v1(settings))
            readiness["portone"] = portone.check_credentials
            provider = portone
        yield Container(
            settings=settings,
            provider=provider,
            store=store,
            identities=store,
            vault=store,
            tokens=tokens,
            policies=policies,
            clock=clock,
            rules=verification_rules(settings),
            retention=retention(settings),
            log=log,
            signer=signer,
            history=history,
            barred=barred,
            reviews=review_cases,
            review_rules=review_rules(settings),
            readiness=readiness,
        )


@dataclass(frozen=True, slots=True)
class Operations:
    """What the operator's commands work with: keys, stored identities and API tokens."""

    keys: KeyMaintenance
    vault: IdentityVault
    tokens: AccessTokens
    verifications: VerificationStore
    clock: Clock
    retention: Retention
    log: DecisionLog
    settings: Settings
    blocklist: Blocklist
    reviews: ReviewCases
    review_rules: ReviewRules

    def signer(self) -> CheckpointSigner:
        """The log's signing key, loaded only by the commands that sign or check checkpoints."""
        return checkpoint_signer(self.settings)

    async def purge(self) -> Purged:
        return await services.purge_expired(
            store=self.verifications, clock=self.clock, retention=self.retention
        )


@contextlib.asynccontextmanager
async def operations(settings: Settings, *, clock: Clock | None = None) -> AsyncIterator[Operations]:
    """The adapters behind `idgate keys|tokens|erase`. Nothing loads the keyring until a command needs
    it, so `idgate tokens …` works without one and `idgate keys status` can report a bad one."""
    clock = clock or SystemClock()
    async with database(settings, write_transactions=True) as db:
        source = keyring_source(settings)
        engine = db.engine
        keyring = VerifiedKeyring(source.current, engine, clock)
        vault = SqlVerificationStore(db, keyring, clock)
        yield Operations(
            keys=KeyMaintenance(engine, source, clock),
            vault=vault,
            tokens=SqlAccessTokens(engine, clock),
            verifications=vault,
            clock=clock,
            retention=retention(settings),
            log=SqlDecisionLog(db, keyring, clock),
            blocklist=SqlBlocklist(db, keyring, clock),
            reviews=SqlReviewCases(db, keyring, clock),
            review_rules=review_rules(settings),
            settings=settings,
        )


# ---- the parts ---------------------------------------------------------------------------------
def build_policies(
    settings: Settings, plugins: Iterable[EntryPoint] | None = None, extra_plugins: Iterable[object] = ()
) -> PluginPolicyEvaluator:
    catalog = load_catalog(
        new_plugin_manager(), plugins, block=frozenset(settings.policies.block), extra=extra_plugins
    )
    return PluginPolicyEvaluator(configure(catalog, settings.policies.enabled, settings.policies.options))


def checkpoint_signer(settings: Settings) -> CheckpointSigner:
    return SigningKeyFile(Path(settings.audit.signing_key_path)).load(settings.audit.log_name)


def keyring_source(settings: Settings) -> KeyringSource:
    return KeyringSource(Path(settings.keyring.path), settings.keyring.inline)


def verified_keyring(settings: Settings, engine: AsyncEngine, clock: Clock) -> VerifiedKeyring:
    source = keyring_source(settings)
    source.load()  # a missing or malformed keyring stops start-up with a message saying what to do
    return VerifiedKeyring(source.current, engine, clock)


def verification_rules(settings: Settings) -> VerificationRules:
    v, http = settings.verification, settings.http
    return VerificationRules(
        require_prepare=v.require_prepare,
        prepare_ttl=timedelta(seconds=v.prepare_ttl_seconds),
        max_certification_age=timedelta(seconds=v.max_certification_age_seconds),
        prepare_limit=http.prepare_rate_limit,
        prepare_window=timedelta(seconds=http.prepare_rate_window_seconds),
    )


def review_rules(settings: Settings) -> ReviewRules:
    return ReviewRules(expire_after=timedelta(seconds=settings.reviews.expire_after_seconds))


def retention(settings: Settings) -> Retention:
    r = settings.retention
    return Retention(
        prepared_requests=timedelta(days=r.prepared_request_days),
        consumed_certifications=timedelta(days=r.consumed_certification_days),
        request_counts=timedelta(seconds=settings.http.prepare_rate_window_seconds),
    )


def require_credentials(settings: Settings) -> None:
    if not (settings.portone.imp_key and settings.portone.imp_secret):
        raise ConfigurationError(
            "PortOne credentials are not set: set IDGATE_PORTONE_IMP_KEY and IDGATE_PORTONE_IMP_SECRET "
            "(or imp_key/imp_secret under [portone] in idgate.toml). To try idgate without PortOne, "
            "run `idgate demo`: it runs everything against the built-in sandbox."
        )


@contextlib.asynccontextmanager
async def portone_v1(settings: Settings) -> AsyncIterator[PortOneV1Provider]:
    require_credentials(settings)
    p = settings.portone
    async with PortOneHttp.open(
        p.url,
        connect_timeout=p.connect_timeout,
        read_timeout=p.read_timeout,
        max_connections=p.max_connections,
    ) as http:
        yield PortOneV1Provider(
            http,
            PortOneV1Credentials(p.imp_key, p.imp_secret),
            retry=RetryPolicy(attempts=p.attempts, backoff_seconds=p.backoff),
        )


def require_shared_database(settings: Settings, workers: int) -> None:
    """Several workers need a database several processes can write: PostgreSQL."""
    if parse_url(settings.database.url).get_backend_name() == "sqlite":
        raise ConfigurationError(
            f"{workers} workers need PostgreSQL: SQLite lets one process write at a time, and idgate's "
            "SQLite store batches commits inside one process. Set [database] url to "
            "postgresql+asyncpg://…, or run one worker (one process uses about one core)."
        )


def database_options(settings: Settings) -> DatabaseOptions:
    d = settings.database
    return DatabaseOptions(
        url=d.url,
        sqlite_synchronous=d.sqlite_synchronous,
        pool_size=d.pool_size,
        connect_timeout=d.connect_timeout,
        statement_timeout=d.statement_timeout,
    )


@contextlib.asynccontextmanager
async def database(settings: Settings, *, write_transactions: bool = False) -> AsyncIterator[Database]:
    """The configured database, refused (SchemaOutOfDate) unless its schema is the newest revision."""
    async with open_database(database_options(settings), write_transactions=write_transactions) as db:
        await schema.require_current(db.engine)
        yield db


async def upgrade_schema(settings: Settings) -> tuple[str | None, str]:
    """Create or migrate the configured database's schema; returns (the revision before, the one now)."""
    async with open_database(database_options(settings), write_transactions=True) as db:
        return await schema.upgrade(db.engine)


async def schema_revisions(settings: Settings) -> tuple[str | None, str]:
    """(the revision the configured database is at, the one this idgate needs)."""
    async with open_database(database_options(settings)) as db:
        return await schema.current(db.engine), schema.head()


async def check_schema(settings: Settings) -> None:
    async with database(settings):
        pass
