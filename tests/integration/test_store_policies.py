"""The policies that ask the store, `blocklist` and `velocity`, over real HTTP against the sandbox, on
SQLite and PostgreSQL: the blocklist changed the way `idgate blocklist` changes it, the counts taken
from the decision log the verifications themselves append to."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import httpx

from idgate.domain import Principal, Role
from idgate.domain.blocklist import bar, unbar
from idgate.entrypoints.bootstrap import operations
from idgate.entrypoints.settings import Settings
from tests.conftest import Sandbox, SettingsFactory, prepared_certification, running_api
from tests.databases import TestDatabase

OPERATOR = Principal(name="cli:ops", role=Role.ADMIN)
BUILT_IN = ["age_limit", "duplicate_identity"]


async def verify(api: httpx.AsyncClient, sandbox: Sandbox, person: str, subject: str) -> dict[str, Any]:
    answer = await api.post(
        "/certifications", json=await prepared_certification(api, sandbox, person, subject)
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def reason(decision: dict[str, Any], policy: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in decision["reasons"] if r["policy"] == policy)
    return found


async def change_blocklist(
    settings: Settings, *, add: Sequence[str] = (), remove: Sequence[str] = ()
) -> None:
    async with operations(settings) as ops:
        if add:
            await bar(add, blocklist=ops.blocklist, log=ops.log, operator=OPERATOR)
        if remove:
            await unbar(remove, blocklist=ops.blocklist, log=ops.log, operator=OPERATOR)


async def test_a_barred_person_is_denied_until_taken_off_the_blocklist(
    sandbox: Sandbox, settings_for: SettingsFactory, database: TestDatabase
) -> None:
    settings = settings_for(sandbox, policies={"enabled": [*BUILT_IN, "blocklist"]})
    ci = sandbox.state.persons["adult"].record["unique_key"]
    other = sandbox.state.mint_person(date(1990, 1, 1)).id
    async with running_api(settings) as api:
        await change_blocklist(settings, add=[ci])
        denied = await verify(api, sandbox, "adult", "acct-barred")
        assert denied["verdict"] == "deny"
        assert (reason(denied, "blocklist")["outcome"], reason(denied, "blocklist")["code"]) == (
            "deny",
            "barred",
        )
        assert ci not in str(denied)
        allowed = await verify(api, sandbox, other, "acct-other")
        assert allowed["verdict"] == "allow"
        assert reason(allowed, "blocklist")["code"] == "not_barred"

        await change_blocklist(settings, remove=[ci])  # the server sees it at once: nothing is cached
        again = await verify(api, sandbox, "adult", "acct-barred")
        assert again["verdict"] == "allow"
        assert reason(again, "blocklist")["code"] == "not_barred"

    trail = database.rows("SELECT actor, route, query FROM audit_access ORDER BY id")
    assert trail == [
        ("cli:ops", "blocklist.add", '{"count": "1"}'),
        ("cli:ops", "blocklist.remove", '{"count": "1"}'),
    ]
    assert database.scalar("SELECT count(*) FROM blocklist") == 0


async def test_the_verification_after_the_limit_is_held_for_review(
    sandbox: Sandbox, settings_for: SettingsFactory
) -> None:
    velocity = {"max_per_person": 2, "window_seconds": 600, "outcome": "review"}
    settings = settings_for(
        sandbox, policies={"enabled": [*BUILT_IN, "velocity"], "options": {"velocity": velocity}}
    )
    async with running_api(settings) as api:
        first = await verify(api, sandbox, "adult", "acct-v")
        second = await verify(api, sandbox, "adult", "acct-v")  # the same account again: not a duplicate
        third = await verify(api, sandbox, "adult", "acct-v")
        someone_else = await verify(api, sandbox, "mvno", "acct-w")
    assert [d["verdict"] for d in (first, second, third)] == ["allow", "allow", "review"]
    assert [reason(d, "velocity")["code"] for d in (first, second)] == ["within_limit", "within_limit"]
    held = reason(third, "velocity")
    assert (held["outcome"], held["code"]) == ("review", "too_many_attempts")
    assert "this person was verified 2 times" in held["message"]
    assert someone_else["verdict"] == "allow"


async def test_the_subject_limit_counts_whoever_verifies_for_the_subject(
    sandbox: Sandbox, settings_for: SettingsFactory
) -> None:
    settings = settings_for(
        sandbox,
        policies={"enabled": [*BUILT_IN, "velocity"], "options": {"velocity": {"max_per_subject": 1}}},
    )
    people = [sandbox.state.mint_person(date(1990, 1, 1)).id for _ in range(2)]
    async with running_api(settings) as api:
        first = await verify(api, sandbox, people[0], "acct-s")
        second = await verify(api, sandbox, people[1], "acct-s")
    assert first["verdict"] == "allow"
    assert second["verdict"] == "deny"
    held = reason(second, "velocity")
    assert (held["code"], "subject" in held["message"], "acct-s" in held["message"]) == (
        "too_many_attempts",
        True,
        False,
    )
