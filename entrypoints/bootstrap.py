"""The composition root: the one place that knows every concrete class and wires them to the ports.

Nothing is built at import time. Production, the CLI and tests all call `running(settings, ...)`;
tests pass fakes for any port they want to replace.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Protocol

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from idgate.adapters.clock import SystemClock
from idgate.adapters.crypto import BlindIndexer, FieldCipher, KeyringSource
from idgate.adapters.portone import PortOneV1Credentials, PortOneV1Provider, RetryPolicy
from idgate.adapters.store import (
    IdentityCodec,
    KeyMaintenance,
    SqlAccessTokens,
    SqlVerificationStore,
    create_engine,
)
from idgate.domain import (
    AccessTokens,
    CertificationProvider,
    Clock,
    ConfigurationError,
    IdentityDirectory,
    IdentityVault,
    PolicyDecision,
    PolicyEvaluator,
    VerificationStore,
    services,
)
from idgate.domain.services import VerificationRules
from idgate.policies.engine import (
    PluginPolicyEvaluator,
    configure,
    load_catalog,
    new_plugin_manager,
)

from .settings import Settings

ReadinessCheck = Callable[[], Awaitable[None]]


class IdentityStore(VerificationStore, IdentityDirectory, IdentityVault, Protocol):
    """One store that serves all three ports, so that verification and binding share a transaction."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Container:
    settings: Settings
    provider: CertificationProvider
    store: VerificationStore
    identities: IdentityDirectory
    vault: IdentityVault
    tokens: AccessTokens
    policies: PolicyEvaluator
    clock: Clock
    rules: VerificationRules
    readiness: Mapping[str, ReadinessCheck] = field(default_factory=dict)

    async def verify(self, imp_uid: str, merchant_uid: str | None, subject: str | None) -> PolicyDecision:
        """The verify use case wired to this container's ports."""
        return await services.verify(
            imp_uid=imp_uid,
            merchant_uid=merchant_uid,
            subject=subject,
            provider=self.provider,
            store=self.store,
            identities=self.identities,
            policies=self.policies,
            clock=self.clock,
            rules=self.rules,
        )


def require_credentials(settings: Settings) -> None:
    if not (settings.portone.imp_key and settings.portone.imp_secret):
        raise ConfigurationError(
            "PortOne credentials are not set: set IDGATE_PORTONE_IMP_KEY and IDGATE_PORTONE_IMP_SECRET "
            "(or imp_key/imp_secret under [portone] in idgate.toml). To try idgate without PortOne, "
            "run `idgate demo`: it runs everything against the built-in sandbox."
        )


def keyring_source(settings: Settings) -> KeyringSource:
    return KeyringSource(Path(settings.keyring.path))


def verification_rules(settings: Settings) -> VerificationRules:
    v = settings.verification
    return VerificationRules(
        require_prepare=v.require_prepare,
        prepare_ttl=timedelta(seconds=v.prepare_ttl_seconds),
        max_certification_age=timedelta(seconds=v.max_certification_age_seconds),
    )


def build_policies(
    settings: Settings, plugins: Iterable[EntryPoint] | None = None, extra_plugins: Iterable[object] = ()
) -> PluginPolicyEvaluator:
    catalog = load_catalog(new_plugin_manager(), plugins, extra=extra_plugins)
    return PluginPolicyEvaluator(configure(catalog, settings.policies))


def identity_codec(source: KeyringSource) -> IdentityCodec:
    source.load()  # refuse to start without a usable keyring
    return IdentityCodec(FieldCipher(source.current), BlindIndexer(source.current))


@contextlib.asynccontextmanager
async def database(settings: Settings, *, write_transactions: bool = False) -> AsyncIterator[AsyncEngine]:
    """An engine on the configured database with the schema in place, disposed of on exit."""
    engine = create_engine(settings.database.url, write_transactions=write_transactions)
    try:
        await SqlVerificationStore.create_schema_on(engine)
        yield engine
    finally:
        await engine.dispose()


@dataclass(frozen=True, slots=True)
class Operations:
    """What operator commands work with: stored identities and their keys."""

    keyring: KeyringSource
    vault: IdentityVault
    keys: KeyMaintenance


@contextlib.asynccontextmanager
async def operations(settings: Settings) -> AsyncIterator[Operations]:
    source = keyring_source(settings)
    codec = identity_codec(source)
    async with database(settings, write_transactions=True) as engine:
        yield Operations(
            source, SqlVerificationStore(engine, codec, SystemClock()), KeyMaintenance(engine, codec)
        )


@contextlib.asynccontextmanager
async def token_store(settings: Settings) -> AsyncIterator[SqlAccessTokens]:
    async with database(settings) as engine:
        yield SqlAccessTokens(engine, SystemClock())


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    *,
    provider: CertificationProvider | None = None,
    store: IdentityStore | None = None,
    policies: PolicyEvaluator | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[Container]:
    """Build every port not passed in, yield the container, and close what was opened."""
    readiness: dict[str, ReadinessCheck] = {}
    clock = clock or SystemClock()
    async with contextlib.AsyncExitStack() as stack:
        if policies is None:
            policies = build_policies(settings)
        engine = await stack.enter_async_context(database(settings))
        if store is None:
            sql_store = SqlVerificationStore(engine, identity_codec(keyring_source(settings)), clock)
            readiness["store"] = sql_store.ping
            store = sql_store
        if provider is None:
            require_credentials(settings)
            p = settings.portone
            client = httpx.AsyncClient(
                base_url=p.url,
                timeout=httpx.Timeout(p.read_timeout, connect=p.connect_timeout),
                headers={"User-Agent": "idgate"},
            )
            stack.push_async_callback(client.aclose)
            provider = PortOneV1Provider(
                client,
                PortOneV1Credentials(p.imp_key, p.imp_secret),
                retry=RetryPolicy(attempts=p.attempts, backoff_seconds=p.backoff),
            )
            readiness["portone"] = provider.check_credentials
        yield Container(
            settings=settings,
            provider=provider,
            store=store,
            identities=store,
            vault=store,
            tokens=SqlAccessTokens(engine, clock),
            policies=policies,
            clock=clock,
            rules=verification_rules(settings),
            readiness=readiness,
        )
