"""The real SQL store on a real database file, made the one way every test that needs it makes it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from idgate.adapters.crypto import Keyring, KeyringSource
from idgate.adapters.store import SqlVerificationStore, VerifiedKeyring, create_engine
from tests.fakes import FixedClock


@contextlib.asynccontextmanager
async def sqlite_store(folder: Path, name: str = "idgate.db") -> AsyncIterator[SqlVerificationStore]:
    """A store on `folder/name` with a new keyring beside it; closed, and its engine disposed, on exit."""
    engine = create_engine(f"sqlite+aiosqlite:///{folder}/{name}")
    keys = KeyringSource(folder / "keyring.json")
    keys.save(Keyring.generate(), create=True)
    await SqlVerificationStore.create_schema_on(engine)
    store = SqlVerificationStore(engine, VerifiedKeyring(keys.current, engine, FixedClock()), FixedClock())
    try:
        yield store
    finally:
        await store.aclose()
        await engine.dispose()
