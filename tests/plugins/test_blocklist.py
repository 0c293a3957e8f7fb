"""The built-in blocklist policy, through the catalog, against the fake blocklist."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idgate.domain import ConfigurationError, Outcome, PolicyContext, Ruling
from idgate.policies.engine import load_catalog, new_plugin_manager
from idgate.testing import InMemoryBlocklist
from tests.fakes import T0, a_certification
from tests.plugins.test_policy_engine import configure_enabled


def policy(**options: Any) -> Any:
    [configured] = configure_enabled(load_catalog(new_plugin_manager()), {"blocklist": options})
    return configured.policy


async def rule(barred: InMemoryBlocklist | None, options: dict[str, Any], **cert: Any) -> Ruling:
    ruling: Ruling = await policy(**options)(
        a_certification(**cert), PolicyContext(subject="acct-1", now=T0, barred=barred)
    )
    return ruling


@pytest.fixture
def barred() -> InMemoryBlocklist:
    made = InMemoryBlocklist()
    asyncio.run(made.add(["CI-BARRED"], added_by="cli:ops"))
    return made


@pytest.mark.parametrize(
    ("options", "cert", "outcome", "code"),
    [
        ({}, {"ci": "CI-BARRED"}, Outcome.DENY, "barred"),
        ({}, {"ci": " CI-BARRED "}, Outcome.DENY, "barred"),
        ({}, {"ci": "CI-OTHER"}, Outcome.ALLOW, "not_barred"),
        ({}, {"ci": None, "di": "DI-A"}, Outcome.ABSTAIN, "no_ci"),
        ({}, {"ci": "  "}, Outcome.ABSTAIN, "no_ci"),
        ({"without_ci": "abstain"}, {"ci": None}, Outcome.ABSTAIN, "no_ci"),
        ({"without_ci": "deny"}, {"ci": None}, Outcome.DENY, "no_ci"),
        ({"without_ci": "deny"}, {"ci": "CI-OTHER"}, Outcome.ALLOW, "not_barred"),
    ],
)
async def test_blocklist(
    barred: InMemoryBlocklist, options: dict[str, Any], cert: dict[str, Any], outcome: Outcome, code: str
) -> None:
    ruling = await rule(barred, options, **cert)
    assert (ruling.outcome, ruling.code) == (outcome, code)
    assert "CI-" not in ruling.message


async def test_without_a_blocklist_it_fails_closed() -> None:
    ruling = await rule(None, {})
    assert (ruling.outcome, ruling.code) == (Outcome.ERROR, "no_blocklist")


def test_an_unknown_without_ci_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigurationError, match=r"\[policies\.blocklist\]"):
        policy(without_ci="di")


cis = st.text(alphabet="ABCDEFabcdef0123456789+/=", min_size=1, max_size=12)


@given(st.sets(cis, max_size=6), cis, st.sampled_from(["", " ", "\n"]))
def test_a_person_is_denied_exactly_when_their_ci_is_barred(barred_cis: set[str], ci: str, pad: str) -> None:
    blocklist = InMemoryBlocklist()

    async def check() -> Ruling:
        if barred_cis:
            await blocklist.add(sorted(barred_cis), added_by="cli:ops")
        return await rule(blocklist, {}, ci=f"{pad}{ci}{pad}")

    ruling = asyncio.run(check())
    assert ruling.outcome is (Outcome.DENY if ci in barred_cis else Outcome.ALLOW)
    assert ruling.code == ("barred" if ci in barred_cis else "not_barred")
