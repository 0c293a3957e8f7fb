"""The auditors' routes on a real socket, on both databases: who may ask, what they get, and what the
access log keeps of each question."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from idgate.domain import Role, merkle, records, services
from idgate.entrypoints.bootstrap import operations
from idgate.entrypoints.settings import Settings
from tests.conftest import Sandbox, prepared_certification, running_api
from tests.integration.test_http_api import assert_problem

# Every auditor route, with a request that would succeed for an auditor.
ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/decisions", {}),
    ("GET", "/decisions/stats", {}),
    ("GET", "/decisions/export", {}),
    ("POST", "/decisions/search", {"json": {"ci": "x"}}),
    ("GET", "/decisions/checkpoints", {}),
    ("GET", "/decisions/consistency", {"params": {"old": 1, "new": 1}}),
    ("GET", "/decisions/log", {}),
    ("POST", "/decisions/verify", {}),
    ("GET", "/decisions/dec_0000", {}),
]


@dataclass
class Audited:
    api: httpx.AsyncClient
    auditor: dict[str, str]  # headers
    imp_uids: dict[str, str]  # person label -> imp_uid of their decision


async def token(settings: Settings, name: str, role: Role) -> str:
    async with operations(settings) as ops:
        return await services.create_token(name, role, tokens=ops.tokens)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
async def audited(settings: Settings, sandbox: Sandbox) -> AsyncIterator[Audited]:
    """Four decisions (two adults allowed, a minor denied, the first adult again for another account,
    denied as a duplicate) and an auditor's token."""
    auditor = bearer(await token(settings, "auditor-kim", Role.AUDITOR))
    async with running_api(settings) as api:
        imp_uids = {}
        for label, person, subject in [
            ("adult", "adult", "acct-1"),
            ("leap", "leap-day", "acct-2"),
            ("minor", "minor", "acct-3"),
            ("again", "adult", "acct-4"),
        ]:
            body = await prepared_certification(api, sandbox, person, subject=subject)
            assert (await api.post("/certifications", json=body)).status_code == 200
            imp_uids[label] = body["imp_uid"]
        yield Audited(api, auditor, imp_uids)


@pytest.mark.parametrize(("method", "path", "options"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
async def test_every_auditor_route_refuses_everyone_but_an_auditor(
    audited: Audited, settings: Settings, method: str, path: str, options: dict[str, Any]
) -> None:
    api = audited.api
    assert_problem(await api.request(method, path, **options), 401, "unauthenticated")
    assert_problem(
        await api.request(method, path, headers=bearer("idg_not-a-token"), **options), 401, "unauthenticated"
    )
    service = bearer(await token(settings, "shop-backend", Role.SERVICE))
    refused = assert_problem(await api.request(method, path, headers=service, **options), 403, "forbidden")
    assert "role auditor" in refused["detail"]

    revoked = bearer(await token(settings, "former-auditor", Role.AUDITOR))
    allowed = await api.request(method, path, headers=revoked, **options)
    assert allowed.status_code in (200, 404), allowed.text  # 404: dec_0000 is no decision
    async with operations(settings) as ops:
        await services.revoke_token("former-auditor", tokens=ops.tokens)
    assert_problem(await api.request(method, path, headers=revoked, **options), 401, "unauthenticated")


async def test_filters_and_pages_newest_first(audited: Audited) -> None:
    api, auditor = audited.api, audited.auditor

    async def listed(**params: Any) -> list[dict[str, Any]]:
        answer = await api.get("/decisions", params=params, headers=auditor)
        assert answer.status_code == 200, answer.text
        entries: list[dict[str, Any]] = answer.json()["decisions"]
        return entries

    everything = await listed()
    assert [e["seq"] for e in everything] == [4, 3, 2, 1]
    assert {e["record"]["imp_uid"] for e in await listed(verdict="deny")} == {
        audited.imp_uids["minor"],
        audited.imp_uids["again"],
    }
    assert [e["record"]["imp_uid"] for e in await listed(code="under_age")] == [audited.imp_uids["minor"]]
    assert [e["seq"] for e in await listed(policy="duplicate_identity", outcome="deny")] == [4]
    assert [e["seq"] for e in await listed(subject="acct-2")] == [2]
    assert [e["seq"] for e in await listed(imp_uid=audited.imp_uids["adult"])] == [1]
    assert len(await listed(provider=everything[0]["record"]["provider"])) >= 1
    assert await listed(provider="no-such-provider") == []
    now = datetime.now(UTC)
    assert len(await listed(since=(now - timedelta(hours=1)).isoformat())) == 4
    assert await listed(until=(now - timedelta(hours=1)).isoformat()) == []

    first = (await api.get("/decisions", params={"limit": 3}, headers=auditor)).json()
    assert [e["seq"] for e in first["decisions"]] == [4, 3, 2]
    rest = await api.get("/decisions", params={"limit": 3, "before": first["next_before"]}, headers=auditor)
    assert [e["seq"] for e in rest.json()["decisions"]] == [1]
    assert rest.json()["next_before"] is None

    naive = await api.get("/decisions", params={"since": "2026-12-01T00:00:00"}, headers=auditor)
    assert_problem(naive, 400, "invalid_request")
    assert_problem(
        await api.get("/decisions", params={"limit": 501}, headers=auditor), 400, "invalid_request"
    )


async def test_one_decision_comes_with_a_proof_that_checks_out(audited: Audited, sandbox: Sandbox) -> None:
    api, auditor = audited.api, audited.auditor
    listed = (await api.get("/decisions", headers=auditor)).json()["decisions"]
    wanted = listed[1]
    shown = (await api.get(f"/decisions/{wanted['record']['decision_id']}", headers=auditor)).json()
    assert shown["record"] == wanted["record"]
    proof = shown["proof"]
    assert proof["verifies"] is True
    leaf = merkle.leaf_hash(records.canonical(shown["record"]))
    assert leaf.hex() == proof["leaf_hash"]
    assert merkle.verify_inclusion(
        leaf,
        proof["leaf_index"],
        proof["tree_size"],
        [bytes.fromhex(h) for h in proof["hashes"]],
        bytes.fromhex(proof["root"]),
    )
    status = (await api.get("/decisions/log", headers=auditor)).json()
    assert (status["size"], status["root"]) == (4, proof["root"])

    person = sandbox.state.persons["adult"].record
    for value in (person["unique_key"], person["name"], person["phone"]):
        assert value not in json.dumps(shown, ensure_ascii=False)
    missing = await api.get("/decisions/dec_nope", headers=auditor)
    assert_problem(missing, 404, "decision_not_found")


async def test_a_persons_decisions_by_ci_in_the_body_never_in_the_access_log(
    audited: Audited, sandbox: Sandbox, settings: Settings
) -> None:
    api, auditor = audited.api, audited.auditor
    ci = sandbox.state.persons["adult"].record["unique_key"]
    found = await api.post("/decisions/search", json={"ci": ci}, headers=auditor)
    assert found.status_code == 200, found.text
    assert [e["record"]["imp_uid"] for e in found.json()["decisions"]] == [
        audited.imp_uids["again"],
        audited.imp_uids["adult"],
    ]
    nobody = await api.post("/decisions/search", json={"ci": "not-anyones-ci"}, headers=auditor)
    assert nobody.json()["decisions"] == []
    assert_problem(
        await api.post("/decisions/search", json={"ci": " "}, headers=auditor), 400, "invalid_request"
    )
    await api.get("/decisions", params={"verdict": "deny", "code": "under_age"}, headers=auditor)

    async with operations(settings) as ops:
        trail = await ops.log.accesses(limit=10)
    assert [(a.actor, a.route) for a in trail[:3]] == [
        ("auditor-kim", "list"),
        ("auditor-kim", "search"),
        ("auditor-kim", "search"),
    ]
    assert dict(trail[0].query) == {"verdict": "deny", "code": "under_age"}
    assert ci not in repr(trail)


async def test_stats_count_verdicts_and_deny_reasons_per_bucket(audited: Audited) -> None:
    api, auditor = audited.api, audited.auditor
    for bucket in ("hour", "day"):
        stats = (await api.get("/decisions/stats", params={"bucket": bucket}, headers=auditor)).json()
        assert stats["bucket"] == bucket
        verdicts = {v["verdict"]: v["count"] for v in stats["verdicts"]}
        assert verdicts == {"allow": 2, "deny": 2}
        codes = {(d["policy"], d["code"]): d["count"] for d in stats["deny_codes"]}
        assert codes == {("age_limit", "under_age"): 1, ("duplicate_identity", "identity_bound_elsewhere"): 1}
        start = datetime.fromisoformat(stats["verdicts"][0]["start"])
        assert start.minute == 0
        assert start.second == 0
    filtered = (await api.get("/decisions/stats", params={"verdict": "allow"}, headers=auditor)).json()
    assert {v["verdict"] for v in filtered["verdicts"]} == {"allow"}
    assert filtered["deny_codes"] == []


async def test_exports_stream_every_record_as_json_lines_or_csv(audited: Audited) -> None:
    api, auditor = audited.api, audited.auditor
    lines = await api.get("/decisions/export", headers=auditor)
    assert lines.headers["content-type"].startswith("application/x-ndjson")
    entries = [json.loads(line) for line in lines.text.splitlines()]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    listed = (await api.get("/decisions", headers=auditor)).json()["decisions"]
    assert [e["record"] for e in entries] == [e["record"] for e in reversed(listed)]

    table = await api.get("/decisions/export", params={"format": "csv", "verdict": "deny"}, headers=auditor)
    assert table.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [(r["seq"], r["verdict"]) for r in rows] == [("3", "deny"), ("4", "deny")]
    assert "age_limit:deny:under_age" in rows[0]["results"]
    bad = await api.get("/decisions/export", params={"format": "xml"}, headers=auditor)
    assert_problem(bad, 400, "invalid_request")


async def test_checkpoints_and_consistency_between_them(audited: Audited, sandbox: Sandbox) -> None:
    api, auditor = audited.api, audited.auditor
    none_yet = (await api.get("/decisions/checkpoints", headers=auditor)).json()
    assert "BEGIN PUBLIC KEY" in none_yet["public_key"]
    before = len(none_yet["checkpoints"])

    body = await prepared_certification(api, sandbox, "mvno", subject="acct-5")
    assert (await api.post("/certifications", json=body)).status_code == 200
    proof = (await api.get("/decisions/consistency", params={"old": 4, "new": 5}, headers=auditor)).json()
    assert proof["verifies"] is True
    assert merkle.verify_consistency(
        4,
        5,
        bytes.fromhex(proof["old_root"]),
        bytes.fromhex(proof["new_root"]),
        [bytes.fromhex(h) for h in proof["hashes"]],
    )
    too_far = await api.get("/decisions/consistency", params={"old": 2, "new": 6}, headers=auditor)
    assert_problem(too_far, 400, "invalid_request")
    assert len((await api.get("/decisions/checkpoints", headers=auditor)).json()["checkpoints"]) == before

    verified = (await api.post("/decisions/verify", headers=auditor)).json()
    assert verified["ok"] is True
    assert (verified["size"], verified["rows"], verified["first_bad_seq"]) == (5, 5, None)


async def test_a_proof_in_the_tree_of_a_checkpoint_the_auditor_holds(
    audited: Audited, sandbox: Sandbox
) -> None:
    api, auditor = audited.api, audited.auditor
    first = (
        await api.get("/decisions", params={"imp_uid": audited.imp_uids["adult"]}, headers=auditor)
    ).json()
    decision_id = first["decisions"][0]["record"]["decision_id"]
    body = await prepared_certification(api, sandbox, "mvno", subject="acct-5")
    assert (await api.post("/certifications", json=body)).status_code == 200

    for size in (1, 2, 4, 5):
        shown = await api.get(f"/decisions/{decision_id}", params={"tree_size": size}, headers=auditor)
        assert shown.status_code == 200, shown.text
        proof = shown.json()["proof"]
        assert (proof["tree_size"], proof["verifies"]) == (size, True)
    for size in (6, 0):
        refused = await api.get(f"/decisions/{decision_id}", params={"tree_size": size}, headers=auditor)
        assert refused.status_code == 400, refused.text
    later = (
        await api.get("/decisions", params={"imp_uid": audited.imp_uids["again"]}, headers=auditor)
    ).json()
    before_it = await api.get(
        f"/decisions/{later['decisions'][0]['record']['decision_id']}",
        params={"tree_size": 3},
        headers=auditor,
    )
    assert_problem(before_it, 400, "invalid_request")  # seq 4 is not in the tree of 3
