from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, settings

from idgate.adapters.crypto import Keyring, KeyringSource
from idgate.entrypoints.http import create_app
from idgate.entrypoints.servers import Listener, serving
from idgate.entrypoints.settings import Settings, load_settings, with_overrides
from idgate.sandbox import SandboxState, create_sandbox_app

# The workplace's shared/ folder sits beside the checkout (CI clones it so); tests read it in place.
SHARED = Path(os.environ.get("IDGATE_TEST_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")

settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers follow the folder, so nobody has to remember them."""
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


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def settings_for(tmp_path: Path) -> SettingsFactory:
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
            database={"url": f"sqlite+aiosqlite:///{tmp_path}/idgate.db"},
            keyring={"path": str(tmp_path / "keyring.json")},
        )
        if not (tmp_path / "keyring.json").exists():
            KeyringSource(tmp_path / "keyring.json").save(Keyring.generate(), create=True)
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
