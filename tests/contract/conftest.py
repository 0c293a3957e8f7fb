"""Each contract suite runs against the in-memory fake and the real adapter on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from idgate.adapters.store import DatabaseOptions, SqlAccessTokens, open_database
from idgate.domain import AccessTokens
from idgate.entrypoints.bootstrap import IdentityStore
from tests.conftest import Templates
from tests.databases import TestDatabase, postgres_database, sqlite_database
from tests.fakes import FakeAccessTokens, FixedClock, InMemoryVerificationStore
from tests.stores import sql_store


@pytest.fixture(params=["fake", "sqlite", "postgresql"])
def implementation(
    request: pytest.FixtureRequest, tmp_path: Path, templates: Templates
) -> Iterator[TestDatabase | None]:
    """None for the fake; otherwise the database the real adapter runs on."""
    if request.param == "fake":
        yield None
    elif request.param == "sqlite":
        yield sqlite_database(tmp_path, templates.sqlite(), "contract.db")
    else:
        with postgres_database(templates.postgres()) as database:
            yield database


@pytest.fixture
async def store(implementation: TestDatabase | None, tmp_path: Path) -> AsyncIterator[IdentityStore]:
    if implementation is None:
        yield InMemoryVerificationStore()
        return
    async with sql_store(implementation, tmp_path) as store:
        yield store


@pytest.fixture
async def tokens(implementation: TestDatabase | None) -> AsyncIterator[AccessTokens]:
    if implementation is None:
        yield FakeAccessTokens()
        return
    async with open_database(DatabaseOptions(url=implementation.url)) as db:
        yield SqlAccessTokens(db.engine, FixedClock())
