from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from idgate.entrypoints.settings import Settings
from tests.conftest import Sandbox, SettingsFactory, running_api


@pytest.fixture
def settings(sandbox: Sandbox, settings_for: SettingsFactory) -> Settings:
    return settings_for(sandbox)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_api(settings) as client:
        yield client
