"""Tests in a real headless browser: Debian's chromium at /usr/bin/chromium, driven by Playwright.

Playwright never downloads a browser here (no `playwright install`): it is pointed at Debian's.
`make test` installs chromium when it is missing. Without it (or without the `playwright` package) the
browser tests skip, and the run ends with a red banner saying they did not run; under CI they fail.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
# Read now: the autouse fixture in tests/conftest.py removes every IDGATE_* variable before a test.
ARTIFACTS = os.environ.get("IDGATE_ARTIFACTS") or None
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

NOT_RUN = pytest.StashKey[list[str]]()
SCREENSHOTS = pytest.StashKey[list[Path]]()


def missing_browser() -> str | None:
    """Why the browser tests cannot run on this machine, or None when they can."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"Debian's chromium is not installed at {CHROMIUM} (make test installs it: apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the Python package playwright is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture
async def browser(request: pytest.FixtureRequest) -> AsyncIterator[Browser]:
    """A headless chromium of this test's own; skips (fails under CI) when there is none."""
    why = missing_browser()
    if why is not None:
        request.config.stash.setdefault(NOT_RUN, []).append(f"{request.node.nodeid}: {why}")
        if IN_CI:
            pytest.fail(f"THE BROWSER TEST CANNOT RUN: {why}")
        pytest.skip(f"THE BROWSER TEST DID NOT RUN: {why}")
    from playwright.async_api import async_playwright  # noqa: PLC0415 - only once it is known to be there

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            # Nothing but 127.0.0.1 resolves: the pages under test load nothing from another host.
            args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"],
        )
        try:
            yield launched
        finally:
            await launched.close()


class Screenshots:
    """Saves screenshots into $IDGATE_ARTIFACTS when set (CI keeps that folder), else the test's
    tmp_path, and names each again at the end of the run, so that it is found without -s."""

    def __init__(self, folder: Path, config: pytest.Config) -> None:
        self.folder = folder
        self._config = config

    async def save(self, page: Page, name: str, *, full_page: bool = False) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        await page.screenshot(path=path, full_page=full_page)
        self._config.stash.setdefault(SCREENSHOTS, []).append(path)
        print(f"screenshot: {path}")  # shown with -s, and in the report of a failing test
        return path


@pytest.fixture
def screenshots(tmp_path: Path, request: pytest.FixtureRequest) -> Screenshots:
    return Screenshots(Path(ARTIFACTS) if ARTIFACTS else tmp_path, request.config)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    for path in config.stash.get(SCREENSHOTS, []):
        terminalreporter.write_line(f"browser test screenshot: {path}")
    not_run = config.stash.get(NOT_RUN, [])
    if not_run:
        terminalreporter.write_sep("!", "THE BROWSER TEST DID NOT RUN", red=True, bold=True)
        for line in not_run:
            terminalreporter.write_line(f"THE BROWSER TEST DID NOT RUN: {line}", red=True, bold=True)
        terminalreporter.write_sep(
            "!", "make test installs Debian's chromium, and playwright with the dev extras", red=True
        )
