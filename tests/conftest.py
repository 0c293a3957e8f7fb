from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings

from idgate.adapters.crypto import Keyring, KeyringSource, SigningKeyFile
from idgate.adapters.store import schema
from idgate.entrypoints.http import create_app
from idgate.entrypoints.servers import Listener, serving
from idgate.entrypoints.settings import Settings, load_settings, with_overrides
from idgate.sandbox import SandboxState, create_sandbox_app
from tests.databases import (
    PostgresUnreachable,
    TestDatabase,
    check_postgres,
    create_postgres_database,
    drop_postgres_database,
    postgres_database,
    postgres_url,
    sqlite_database,
)

# The workplace's shared/ folder sits beside the checkout (CI clones it so); tests read it in place.
SHARED = Path(os.environ.get("IDGATE_TEST_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")

settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers follow the folder, so nobody has to remember them. A run with PostgreSQL tests in it
    stops at once, saying what to do, when PostgreSQL cannot be reached: it fails, never skips."""
    if any("postgres" in item.nodeid.lower() for item in items):
        try:
            check_postgres()
        except PostgresUnreachable as exc:
            pytest.exit(str(exc), returncode=1)
    for item in items:
        parts = Path(str(item.path)).parts
        if "integration" in parts or "contract" in parts:
            item.add_marker(pytest.mark.integration)
        if "e2e" in parts:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _no_stray_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the developer's idgate.toml or IDGATE_* variables."""
    for name in [n for n in os.environ if n.startswith("IDGATE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


class Sandbox:
    """A running sandbox reached over a real socket, plus helpers to drive its test API."""

    def __init__(self, url: str, state: SandboxState) -> None:
        self.url = url
        self.state = state

    async def certify(self, person: str, merchant_uid: str | None = None) -> str:
        async with httpx.AsyncClient(base_url=self.url) as client:
            made = await client.post(
                "/sandbox/certifications", json={"person": person, "merchant_uid": merchant_uid}
            )
            made.raise_for_status()
            imp_uid: str = made.json()["imp_uid"]
            return imp_uid

    async def fault(self, kind: str, count: int = 1, **options: object) -> None:
        async with httpx.AsyncClient(base_url=self.url) as client:
            (
                await client.post("/sandbox/faults", json={"kind": kind, "count": count, **options})
            ).raise_for_status()

    def requests(self, key: str) -> int:
        return self.state.requests[key]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    state = SandboxState()
    async with serving([Listener(create_sandbox_app(state), "127.0.0.1", 0, "sandbox")]) as (url,):
        yield Sandbox(url, state)


# ---- databases: every test that touches one runs on SQLite and on PostgreSQL ---------------------
class Templates:
    """Databases migrated once per run, copied for each test (a migration per test would cost more)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._sqlite: Path | None = None
        self._postgres: str | None = None

    def sqlite(self) -> Path:
        if self._sqlite is None:
            path = self._folder / "template.db"
            _migrate(sa.create_engine(f"sqlite:///{path}"))
            self._sqlite = path
        return self._sqlite

    def postgres(self) -> str:
        if self._postgres is None:
            name = create_postgres_database()  # reachable: pytest_collection_modifyitems checked
            url = sa.make_url(postgres_url(name)).set(drivername="postgresql+psycopg")
            _migrate(sa.create_engine(url, poolclass=sa.NullPool))
            self._postgres = name
        return self._postgres

    def close(self) -> None:
        if self._postgres is not None:
            drop_postgres_database(self._postgres)


def _migrate(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        schema.upgrade_connection(connection)
    engine.dispose()


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Templates]:
    made = Templates(tmp_path_factory.mktemp("templates"))
    yield made
    made.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path, templates: Templates) -> Iterator[TestDatabase]:
    """A database with idgate's schema at the newest revision, of this test's own."""
    if request.param == "sqlite":
        yield sqlite_database(tmp_path, templates.sqlite())
        return
    with postgres_database(templates.postgres()) as made:
        yield made


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(
    request: pytest.FixtureRequest, tmp_path: Path, templates: Templates
) -> Iterator[TestDatabase]:
    """A database with no tables at all, of this test's own."""
    if request.param == "sqlite":
        yield sqlite_database(tmp_path)
        return
    templates.postgres()  # fails the run with what to do when PostgreSQL is unreachable
    with postgres_database() as made:
        yield made


only_sqlite = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
only_postgresql = pytest.mark.parametrize("database", ["postgresql"], indirect=True)


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def settings_for(tmp_path: Path, database: TestDatabase) -> SettingsFactory:
    def make(sandbox: Sandbox, **sections: dict[str, object]) -> Settings:
        base = with_overrides(
            load_settings(None, {}),
            portone={
                "url": sandbox.url,
                "imp_key": "sandbox_imp_key",
                "imp_secret": "sandbox_imp_secret",
                "backoff": 0.01,
                "read_timeout": 2.0,
            },
            database={"url": database.url},
            keyring={"path": str(tmp_path / "keyring.json")},
            audit={"signing_key_path": str(tmp_path / "log-signing-key.pem")},
            # Tests prepare many verifications from one address; the limit has tests of its own.
            http={"prepare_rate_limit": 0},
        )
        if not (tmp_path / "keyring.json").exists():
            KeyringSource(tmp_path / "keyring.json").save(Keyring.generate(), create=True)
        if not (tmp_path / "log-signing-key.pem").exists():
            SigningKeyFile(tmp_path / "log-signing-key.pem").create()
        return with_overrides(base, **sections) if sections else base

    return make


@contextlib.asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real Litestar app on a real socket; yields a client pointed at it."""
    listener = Listener(create_app(settings), "127.0.0.1", 0, "API")
    async with serving([listener]) as (url,), httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client


async def prepared_certification(
    api: httpx.AsyncClient, sandbox: Sandbox, person: str, subject: str | None = None
) -> dict[str, str]:
    """What a browser would send after the verification window closed."""
    prepared = await api.post("/certifications/prepare", json={"subject": subject} if subject else {})
    assert prepared.status_code == 201, prepared.text
    merchant_uid = prepared.json()["merchant_uid"]
    return {"imp_uid": await sandbox.certify(person, merchant_uid), "merchant_uid": merchant_uid}
