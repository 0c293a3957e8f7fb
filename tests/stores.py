"""The real SQL store on a real database, made the one way every test that needs it makes it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from idgate.adapters.clock import SystemClock
from idgate.adapters.crypto import Keyring, KeyringSource
from idgate.adapters.store import (
    DatabaseOptions,
    SqlAccessTokens,
    SqlVerificationStore,
    VerifiedKeyring,
    open_database,
)
from idgate.domain import Role
from idgate.entrypoints.bootstrap import database_options
from idgate.entrypoints.settings import Settings
from tests.databases import TestDatabase
from tests.fakes import FixedClock


@contextlib.asynccontextmanager
async def sql_store(database: TestDatabase, folder: Path) -> AsyncIterator[SqlVerificationStore]:
    """A store on `database` (migrated) with a new keyring in `folder`; closed on exit."""
    keys = KeyringSource(folder / "keyring.json")
    if not keys.path.exists():
        keys.save(Keyring.generate(), create=True)
    async with open_database(DatabaseOptions(url=database.url, pool_size=4)) as db:
        yield SqlVerificationStore(db, VerifiedKeyring(keys.current, db.engine, FixedClock()), FixedClock())


async def api_token(settings: Settings, role: Role, name: str) -> str:
    """A new API token in the configured database, as `idgate tokens create` makes one."""
    async with open_database(database_options(settings)) as db:
        return await SqlAccessTokens(db.engine, SystemClock()).create(name, role)


async def revoke_token(settings: Settings, name: str) -> bool:
    async with open_database(database_options(settings)) as db:
        return await SqlAccessTokens(db.engine, SystemClock()).revoke(name)
