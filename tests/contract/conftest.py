"""Each contract suite runs against the in-memory fake and the real adapter on a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from idgate.adapters.store import (
    SqlAccessTokens,
    SqlVerificationStore,
    create_engine,
)
from idgate.domain import AccessTokens
from idgate.entrypoints.bootstrap import IdentityStore
from tests.fakes import FakeAccessTokens, FixedClock, InMemoryVerificationStore
from tests.stores import sqlite_store


@pytest.fixture(params=["fake", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[IdentityStore]:
    if request.param == "fake":
        yield InMemoryVerificationStore()
        return
    async with sqlite_store(tmp_path, "contract.db") as store:
        yield store


@pytest.fixture(params=["fake", "sqlite"])
async def tokens(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AccessTokens]:
    if request.param == "fake":
        yield FakeAccessTokens()
        return
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/tokens.db")
    await SqlVerificationStore.create_schema_on(engine)
    yield SqlAccessTokens(engine, FixedClock())
    await engine.dispose()
