"""idgate's pytest plugin (entry point `pytest11`): the plugin author's kit as fixtures.

    def test_partner_members_pass(run_policy):
        result = run_policy(PARTNERS, options={"partners": ["acme"]}, subject="acme:42")
        assert result.outcome is Outcome.ALLOW

In an async test, `await run_policy_async(…)` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from idgate.domain import Certification, PolicyResult

from . import FrozenClock, InMemoryIdentityDirectory, certification, evaluate_policy_async, policy_context


@pytest.fixture
def frozen_clock() -> FrozenClock:
    """A clock at idgate.testing.NOW that moves only with `advance`."""
    return FrozenClock()


@pytest.fixture
def identity_directory() -> InMemoryIdentityDirectory:
    """An empty directory of who is bound to which subject; `bind(subject, ci=…)` fills it."""
    return InMemoryIdentityDirectory()


@pytest.fixture
def make_certification() -> Callable[..., Certification]:
    """idgate.testing.certification: a certified adult, any field changed by keyword."""
    return certification


PolicyRunner = Callable[..., Coroutine[Any, Any, PolicyResult]]


@pytest.fixture
def run_policy_async(
    frozen_clock: FrozenClock, identity_directory: InMemoryIdentityDirectory
) -> PolicyRunner:
    """`await run_policy_async(policy, options=…, certification=…, subject=…, claims=…)`: one policy
    (a PolicyDefinition, or an installed policy's name) run as idgate would, at the frozen clock's
    time, with the fixture's identity directory; other keywords are PolicyContext fields."""

    async def run(
        policy: Any, *, options: Any = None, certification: Certification | None = None, **context: Any
    ) -> PolicyResult:
        ctx = policy_context(now=frozen_clock.now(), identities=identity_directory, **context)
        return await evaluate_policy_async(policy, options=options, certification=certification, context=ctx)

    return run


@pytest.fixture
def run_policy(run_policy_async: PolicyRunner) -> Callable[..., PolicyResult]:
    """`run_policy_async` for synchronous tests (each call runs its own event loop)."""

    def run(policy: Any, **keywords: Any) -> PolicyResult:
        result: PolicyResult = asyncio.run(run_policy_async(policy, **keywords))
        return result

    return run
