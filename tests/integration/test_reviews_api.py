"""Review cases over a real socket, on both databases: a real verification whose policy says review
opens one, reviewers list and resolve it, an allow binds what an allow binds, the log records every
closing, and an unresolved case expires by itself while the server runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest

from idgate.domain import Role
from idgate.entrypoints import housekeeping
from idgate.entrypoints.settings import Settings
from tests.conftest import Sandbox, SettingsFactory, prepared_certification, running_api
from tests.databases import TestDatabase
from tests.integration.test_http_api import assert_problem
from tests.stores import api_token, revoke_token

REVIEW_DUPLICATES = {"options": {"duplicate_identity": {"on_bound": "review"}}}
KEPT = (
    "key_id",
    "ci",
    "di",
    "phone",
    "name",
    "birth_date",
    "gender",
    "is_foreigner",
    "carrier",
    "certified_at",
)
UNKNOWN_CASE = "dec_01KJP29SWEDHY554H935BG1A15"
ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/reviews", {}),
    ("POST", f"/reviews/{UNKNOWN_CASE}/resolve", {"json": {"verdict": "deny", "note": "n"}}),
]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Reviewing:
    api: httpx.AsyncClient
    settings: Settings
    sandbox: Sandbox
    reviewer: dict[str, str]
    service: dict[str, str]
    admin: dict[str, str]
    auditor: dict[str, str]

    async def verify(self, person: str, subject: str) -> dict[str, Any]:
        body = await prepared_certification(self.api, self.sandbox, person, subject=subject)
        answer = await self.api.post("/certifications", json=body)
        assert answer.status_code == 200, answer.text
        decision: dict[str, Any] = {**answer.json(), "subject": subject}
        return decision

    async def review(self, person: str, bound_to: str, subject: str) -> dict[str, Any]:
        """The person bound to `bound_to`, then verified for `subject`: a review (a duplicate)."""
        assert (await self.verify(person, bound_to))["verdict"] == "allow"
        decision = await self.verify(person, subject)
        assert decision["verdict"] == "review", decision
        return decision

    async def resolve(self, decision_id: str, verdict: str, note: str = "ID card checked") -> httpx.Response:
        return await self.api.post(
            f"/reviews/{decision_id}/resolve", json={"verdict": verdict, "note": note}, headers=self.reviewer
        )

    async def log(self, imp_uid: str) -> list[dict[str, Any]]:
        """The log's records of one imp_uid, newest first."""
        answer = await self.api.get("/decisions", params={"imp_uid": imp_uid}, headers=self.auditor)
        assert answer.status_code == 200, answer.text
        return [e["record"] for e in answer.json()["decisions"]]


async def reviewing_on(settings: Settings, sandbox: Sandbox) -> AsyncIterator[Reviewing]:
    tokens = {
        role: bearer(await api_token(settings, role, f"{role.value}-lee"))
        for role in (Role.REVIEWER, Role.SERVICE, Role.ADMIN, Role.AUDITOR)
    }
    async with running_api(settings) as api:
        yield Reviewing(
            api,
            settings,
            sandbox,
            tokens[Role.REVIEWER],
            tokens[Role.SERVICE],
            tokens[Role.ADMIN],
            tokens[Role.AUDITOR],
        )


@pytest.fixture
async def reviewing(sandbox: Sandbox, settings_for: SettingsFactory) -> AsyncIterator[Reviewing]:
    async for made in reviewing_on(settings_for(sandbox, policies=REVIEW_DUPLICATES), sandbox):
        yield made


def case_row(database: TestDatabase, decision_id: str) -> dict[str, Any]:
    columns = ("state", "resolved_by", "note", "resolution_id", *KEPT)
    [row] = database.rows(
        f"SELECT {', '.join(columns)} FROM review_cases WHERE decision_id = ?",  # noqa: S608 - fixed names
        [decision_id],
    )
    return dict(zip(columns, row, strict=True))


@pytest.mark.parametrize(("method", "path", "options"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
async def test_every_reviewer_route_refuses_everyone_but_a_reviewer(
    reviewing: Reviewing, method: str, path: str, options: dict[str, Any]
) -> None:
    api = reviewing.api
    assert_problem(await api.request(method, path, **options), 401, "unauthenticated")
    assert_problem(
        await api.request(method, path, headers=bearer("idgt_nope"), **options), 401, "unauthenticated"
    )
    for other in (reviewing.service, reviewing.admin, reviewing.auditor):
        refused = assert_problem(await api.request(method, path, headers=other, **options), 403, "forbidden")
        assert "role reviewer" in refused["detail"]

    former = bearer(await api_token(reviewing.settings, Role.REVIEWER, "former-reviewer"))
    allowed = await api.request(method, path, headers=former, **options)
    assert allowed.status_code in (200, 404), allowed.text  # 404: no case has that decision_id
    assert await revoke_token(reviewing.settings, "former-reviewer")
    assert_problem(await api.request(method, path, headers=former, **options), 401, "unauthenticated")


async def test_a_review_opens_a_case_listed_without_personal_data_its_identity_sealed(
    reviewing: Reviewing, database: TestDatabase
) -> None:
    decision = await reviewing.review("adult", "acct-1", "acct-2")
    listed = await reviewing.api.get("/reviews", headers=reviewing.reviewer)
    assert listed.status_code == 200, listed.text
    [case] = listed.json()["cases"]
    assert (case["decision_id"], case["subject"]) == (decision["decision_id"], "acct-2")
    assert case["reasons"] == [{"policy": "duplicate_identity", "code": "identity_bound_elsewhere"}]
    opened_at, expires_at = (datetime.fromisoformat(case[k]) for k in ("opened_at", "expires_at"))
    assert opened_at == datetime.fromisoformat(decision["decided_at"])
    assert (expires_at - opened_at).total_seconds() == reviewing.settings.reviews.expire_after_seconds
    person = reviewing.sandbox.state.persons["adult"].record
    for value in (person["unique_key"], person["name"], person["phone"]):
        assert value not in listed.text
    assert_problem(
        await reviewing.api.get("/identities/acct-2", headers=reviewing.service), 404, "identity_not_found"
    )

    row = case_row(database, decision["decision_id"])
    assert (row["state"], row["note"]) == ("open", None)
    for column, value in (("ci", person["unique_key"]), ("name", person["name"]), ("phone", person["phone"])):
        assert row[column] is not None
        assert value.encode() not in bytes(row[column]), column
    everything = b"".join(database.stored_bytes().values())
    assert person["unique_key"].encode() not in everything
    assert person["name"].encode() not in everything


async def test_allow_binds_the_kept_identity_once_the_person_is_free_and_the_log_says_who(
    reviewing: Reviewing, database: TestDatabase
) -> None:
    api = reviewing.api
    decision = await reviewing.review("adult", "acct-1", "acct-2")
    case_id = decision["decision_id"]

    refused = assert_problem(await reviewing.resolve(case_id, "allow"), 409, "identity_already_bound")
    assert "the case stays open" in refused["detail"]
    assert case_row(database, case_id)["state"] == "open"
    assert len(await reviewing.log(decision["imp_uid"])) == 1  # nothing was logged

    assert (await api.delete("/identities/acct-1", headers=reviewing.admin)).status_code == 204
    resolved = await reviewing.resolve(case_id, "allow", note="홍길동 by phone; the old account was closed")
    assert resolved.status_code == 200, resolved.text
    answer = resolved.json()
    assert (answer["decision_id"], answer["subject"], answer["verdict"]) == (case_id, "acct-2", "allow")
    assert answer["resolved_by"] == "reviewer-lee"

    bound = await api.get("/identities/acct-2", headers=reviewing.service)
    assert bound.status_code == 200, bound.text
    person = reviewing.sandbox.state.persons["adult"].record
    assert (bound.json()["name"], bound.json()["phone"]) == (person["name"], person["phone"])

    row = case_row(database, case_id)
    assert (row["state"], row["resolved_by"], row["resolution_id"]) == (
        "allowed",
        "reviewer-lee",
        answer["logged_as"],
    )
    assert row["note"] == "홍길동 by phone; the old account was closed"
    assert all(row[column] is None for column in KEPT)

    again = assert_problem(await reviewing.resolve(case_id, "deny"), 409, "review_case_closed")
    assert "resolved already (allow, by reviewer-lee" in again["detail"]
    closing, opening = await reviewing.log(decision["imp_uid"])
    assert closing["decision_id"] == answer["logged_as"]
    assert (closing["channel"], closing["caller"], closing["verdict"]) == ("review", "reviewer-lee", "allow")
    assert [(r["policy"], r["code"]) for r in closing["results"]] == [("review_case", "resolved_allow")]
    for name in ("subject", "provider", "identity_ref", "policy_set"):
        assert closing[name] == opening[name], name
    assert "홍길동" not in str(closing)
    verified = (await api.post("/decisions/verify", headers=reviewing.auditor)).json()
    assert verified["ok"] is True, verified


async def test_deny_discards_the_identity_and_bad_requests_say_what_to_fix(
    reviewing: Reviewing, database: TestDatabase
) -> None:
    decision = await reviewing.review("adult", "acct-1", "acct-2")
    case_id = decision["decision_id"]
    assert_problem(await reviewing.resolve(UNKNOWN_CASE, "deny"), 404, "review_case_not_found")
    malformed = assert_problem(await reviewing.resolve("dec_nope", "deny"), 400, "invalid_request")
    assert "Crockford" in malformed["detail"]
    assert_problem(await reviewing.resolve(case_id, "review"), 400, "invalid_request")
    blank = assert_problem(await reviewing.resolve(case_id, "deny", note="  "), 400, "invalid_request")
    assert "note" in blank["detail"]
    assert_problem(await reviewing.resolve(case_id, "deny", note="x" * 2001), 400, "invalid_request")
    missing = await reviewing.api.post(
        f"/reviews/{case_id}/resolve", json={"verdict": "deny"}, headers=reviewing.reviewer
    )
    assert_problem(missing, 400, "invalid_request")
    paged = await reviewing.api.get("/reviews", params={"limit": 501}, headers=reviewing.reviewer)
    assert_problem(paged, 400, "invalid_request")
    assert case_row(database, case_id)["state"] == "open"  # none of that touched it

    resolved = await reviewing.resolve(case_id, "deny", note="not the same person")
    assert resolved.status_code == 200, resolved.text
    assert_problem(
        await reviewing.api.get("/identities/acct-2", headers=reviewing.service), 404, "identity_not_found"
    )
    row = case_row(database, case_id)
    assert (row["state"], row["note"]) == ("denied", "not the same person")
    assert all(row[column] is None for column in KEPT)
    assert (await reviewing.api.get("/reviews", headers=reviewing.reviewer)).json()["cases"] == []
    closing = (await reviewing.log(decision["imp_uid"]))[0]
    assert (closing["verdict"], closing["results"][0]["code"]) == ("deny", "resolved_deny")


async def test_cases_page_newest_first(reviewing: Reviewing) -> None:
    first = await reviewing.review("adult", "acct-1", "acct-2")
    second = await reviewing.verify("adult", "acct-3")
    third = await reviewing.verify("adult", "acct-4")
    page = (await reviewing.api.get("/reviews", params={"limit": 2}, headers=reviewing.reviewer)).json()
    assert [c["decision_id"] for c in page["cases"]] == [third["decision_id"], second["decision_id"]]
    rest = await reviewing.api.get(
        "/reviews", params={"limit": 2, "before": page["next_before"]}, headers=reviewing.reviewer
    )
    assert [c["decision_id"] for c in rest.json()["cases"]] == [first["decision_id"]]
    assert rest.json()["next_before"] is None


async def test_an_unresolved_case_expires_to_deny_while_the_server_runs(
    sandbox: Sandbox, settings_for: SettingsFactory, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(housekeeping, "EXPIRE_REVIEWS_EVERY", 0.2)
    settings = settings_for(sandbox, policies=REVIEW_DUPLICATES, reviews={"expire_after_seconds": 2})
    async for reviewing in reviewing_on(settings, sandbox):
        decision = await reviewing.review("adult", "acct-1", "acct-2")
        case_id = decision["decision_id"]
        async with asyncio.timeout(20):
            # The housekeeping loop closes it, and announces nothing to wait on.
            while case_row(database, case_id)["state"] == "open":  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        row = case_row(database, case_id)
        assert (row["state"], row["resolved_by"], row["note"]) == ("expired", None, None)
        assert all(row[column] is None for column in KEPT)
        late = assert_problem(await reviewing.resolve(case_id, "allow"), 409, "review_case_expired")
        assert "expired unresolved" in late["detail"]
        assert (await reviewing.api.get("/reviews", headers=reviewing.reviewer)).json()["cases"] == []
        closing = (await reviewing.log(decision["imp_uid"]))[0]
        assert (closing["verdict"], closing["channel"], closing["caller"]) == ("deny", "review", None)
        assert [(r["policy"], r["code"]) for r in closing["results"]] == [("review_case", "expired")]
        assert len(await reviewing.log(decision["imp_uid"])) == 2  # expired once, by one look
        assert_problem(
            await reviewing.api.get("/identities/acct-2", headers=reviewing.service),
            404,
            "identity_not_found",
        )
