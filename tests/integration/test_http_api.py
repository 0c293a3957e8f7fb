"""The HTTP API on a real socket, with the real store (SQLite file) and the sandbox as PortOne."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Sandbox, SettingsFactory, prepared_certification, running_api
from tests.databases import TestDatabase

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["detail"]
    return body


async def test_an_adult_is_allowed_and_the_answer_holds_no_personal_data(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    body = await prepared_certification(api, sandbox, "adult", subject="user-1")
    answer = await api.post("/certifications", json=body)
    assert answer.status_code == 200
    decision = answer.json()
    assert set(decision) == {"decision_id", "verdict", "reasons", "imp_uid", "decided_at", "policy_set"}
    assert decision["verdict"] == "allow"
    assert decision["imp_uid"] == body["imp_uid"]
    assert decision["reasons"][1] == {
        "policy": "duplicate_identity",
        "version": "1.0.0",
        "outcome": "allow",
        "code": "identity_unique",
        "message": "no other account for this person (CI)",
        "enforced": True,
    }
    assert decision["reasons"][:1] == [
        {
            "policy": "age_limit",
            "version": "1.1.0",
            "outcome": "allow",
            "code": "age_ok",
            "message": "만 나이 19 or older",
            "enforced": True,
        }
    ]
    person = sandbox.state.persons["adult"].record
    for value in (
        person["name"],
        person["phone"],
        person["unique_key"],
        person["unique_in_site"],
        person["birthday"],
    ):
        assert value not in answer.text


@pytest.mark.parametrize(
    ("person", "verdict"),
    [
        ("minor", "deny"),
        ("turns-19-today", "allow"),
        ("leap-day", "allow"),
        ("kakao-no-ci", "allow"),
    ],
)
async def test_the_age_limit_decides(
    api: httpx.AsyncClient, sandbox: Sandbox, person: str, verdict: str
) -> None:
    answer = await api.post("/certifications", json=await prepared_certification(api, sandbox, person))
    decision = answer.json()
    assert decision["verdict"] == verdict
    age = next(r for r in decision["reasons"] if r["policy"] == "age_limit")
    assert (
        (age["outcome"], age["code"]) == ("allow", "age_ok") if verdict == "allow" else ("deny", "under_age")
    )


async def test_a_replay_is_409(api: httpx.AsyncClient, sandbox: Sandbox) -> None:
    body = await prepared_certification(api, sandbox, "adult")
    assert (await api.post("/certifications", json=body)).status_code == 200
    assert_problem(await api.post("/certifications", json=body), 409, "certification_already_used")


async def test_concurrent_requests_for_one_imp_uid_make_exactly_one_decision(
    api: httpx.AsyncClient, sandbox: Sandbox, database: TestDatabase
) -> None:
    body = await prepared_certification(api, sandbox, "adult")
    answers = await asyncio.gather(*(api.post("/certifications", json=body) for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [200] + [409] * 7
    assert database.scalar("select count(*) from decisions where imp_uid = ?", [body["imp_uid"]]) == 1


@pytest.mark.parametrize(
    "imp_uid", ["../users/getToken", "imp_1/../../users/getToken", "imp_1%2F..", "imp_abc", "x" * 500]
)
async def test_path_injection_is_400_with_zero_upstream_requests(
    api: httpx.AsyncClient, sandbox: Sandbox, imp_uid: str
) -> None:
    prepared = (await api.post("/certifications/prepare", json={})).json()
    answer = await api.post(
        "/certifications", json={"imp_uid": imp_uid, "merchant_uid": prepared["merchant_uid"]}
    )
    assert_problem(answer, 400, "invalid_imp_uid")
    assert sum(sandbox.state.requests.values()) == 0


async def test_missing_merchant_uid_tells_the_frontend_what_to_change(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    imp_uid = await sandbox.certify("adult")
    problem = assert_problem(
        await api.post("/certifications", json={"imp_uid": imp_uid}), 400, "merchant_uid_required"
    )
    assert "POST /certifications/prepare" in problem["detail"]
    assert "IMP.certification" in problem["detail"]


async def test_an_imp_uid_from_another_session_is_422(api: httpx.AsyncClient, sandbox: Sandbox) -> None:
    mine = (await api.post("/certifications/prepare", json={})).json()["merchant_uid"]
    stolen = await sandbox.certify("adult", "someone-elses-order")
    assert_problem(
        await api.post("/certifications", json={"imp_uid": stolen, "merchant_uid": mine}),
        422,
        "merchant_mismatch",
    )


async def test_an_unfinished_verification_is_422(api: httpx.AsyncClient, sandbox: Sandbox) -> None:
    merchant_uid = (await api.post("/certifications/prepare", json={})).json()["merchant_uid"]
    async with httpx.AsyncClient(base_url=sandbox.url) as client:
        token = (
            await client.post(
                "/users/getToken", json={"imp_key": "sandbox_imp_key", "imp_secret": "sandbox_imp_secret"}
            )
        ).json()
        requested = await client.post(
            "/certifications/otp/request",
            headers={"Authorization": token["response"]["access_token"]},
            json={
                "name": "홍길동",
                "phone": "01012345678",
                "birth": "900101",
                "gender_digit": "1",
                "carrier": "SKT",
                "merchant_uid": merchant_uid,
            },
        )
    body = {"imp_uid": requested.json()["response"]["imp_uid"], "merchant_uid": merchant_uid}
    assert_problem(await api.post("/certifications", json=body), 422, "certification_not_completed")


async def test_an_unknown_imp_uid_is_404(api: httpx.AsyncClient) -> None:
    merchant_uid = (await api.post("/certifications/prepare", json={})).json()["merchant_uid"]
    answer = await api.post(
        "/certifications", json={"imp_uid": "imp_404404404", "merchant_uid": merchant_uid}
    )
    assert_problem(answer, 404, "certification_not_found")


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"kind": "latency", "latency_ms": 2500}, 504, "provider_timeout"),
        ({"kind": "malformed"}, 502, "provider_unavailable"),
        ({"kind": "status", "status": 500, "count": 5}, 502, "provider_unavailable"),
    ],
)
async def test_provider_failures(
    api: httpx.AsyncClient, sandbox: Sandbox, fault: dict[str, Any], status: int, code: str
) -> None:
    body = await prepared_certification(api, sandbox, "adult")
    await sandbox.fault(path="/certifications/", **fault)
    assert_problem(await api.post("/certifications", json=body), status, code)
    # Nothing was consumed: once PortOne recovers the same imp_uid still works.
    sandbox.state.faults.clear()
    assert (await api.post("/certifications", json=body)).status_code == 200


async def test_a_broken_store_is_503_and_readyz_says_so(
    api: httpx.AsyncClient, sandbox: Sandbox, database: TestDatabase
) -> None:
    body = await prepared_certification(api, sandbox, "adult")
    assert (await api.get("/readyz")).status_code == 200
    database.execute("drop table consumed_certifications")
    assert_problem(await api.post("/certifications", json=body), 503, "store_unavailable")
    database.cut_off()
    ready = await api.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["store"] == "store_unavailable"


@pytest.mark.parametrize(
    ("payload", "names"),
    [
        ({"imp_uid": 5}, "imp_uid"),
        ({"imp_uid": "imp_1", "extra": 1}, "extra"),
        ({}, "imp_uid"),
        ([], "object"),
        ("x", "object"),
    ],
)
async def test_bad_bodies_are_400_problems_that_name_the_field(
    api: httpx.AsyncClient, payload: object, names: str
) -> None:
    answer = await api.post("/certifications", json=payload)
    problem = assert_problem(answer, 400, "invalid_request")
    assert "Traceback" not in answer.text
    assert names in str(problem["errors"])


async def test_redirect_flow_without_urls_answers_json(api: httpx.AsyncClient, sandbox: Sandbox) -> None:
    body = await prepared_certification(api, sandbox, "adult")
    answer = await api.get("/certifications/redirect", params={**body, "imp_success": "true"})
    assert answer.status_code == 200
    assert answer.json()["verdict"] == "allow"


async def test_redirect_flow_sends_the_browser_on(sandbox: Sandbox, settings_for: SettingsFactory) -> None:
    urls = {"allow_url": "https://shop.example/welcome", "deny_url": "https://shop.example/sorry?from=idgate"}
    async with running_api(settings_for(sandbox, http=urls)) as api:
        allowed = await api.get(
            "/certifications/redirect", params=await prepared_certification(api, sandbox, "adult")
        )
        denied = await api.get(
            "/certifications/redirect", params=await prepared_certification(api, sandbox, "minor")
        )
        broken = await api.get("/certifications/redirect", params={"imp_uid": "../x"})
    assert allowed.status_code == 303
    assert allowed.headers["location"].startswith("https://shop.example/welcome?decision_id=dec_")
    assert allowed.headers["location"].endswith("&verdict=allow")
    assert denied.status_code == 303
    assert denied.headers["location"].startswith("https://shop.example/sorry?from=idgate&decision_id=")
    assert broken.headers["location"] == "https://shop.example/sorry?from=idgate&error=invalid_imp_uid"


async def test_cors_only_for_configured_origins(sandbox: Sandbox, settings_for: SettingsFactory) -> None:
    async with running_api(settings_for(sandbox, http={"cors_origins": ["https://shop.example"]})) as api:
        ok = await api.options(
            "/certifications",
            headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
        )
        other = await api.options(
            "/certifications",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert ok.headers.get("access-control-allow-origin") == "https://shop.example"
    assert "access-control-allow-origin" not in other.headers


async def test_health_readiness_and_openapi(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"store": "ok", "keyring": "ok", "portone": "ok"}
    schema = (await api.get("/schema/openapi.json")).json()
    assert {"/certifications", "/certifications/prepare", "/certifications/redirect"} <= set(schema["paths"])
    assert (await api.get("/demo")).status_code == 404  # only `idgate demo` turns the page on


async def test_readyz_reports_wrong_credentials(sandbox: Sandbox, settings_for: SettingsFactory) -> None:
    async with running_api(settings_for(sandbox, portone={"imp_secret": "wrong"})) as api:
        ready = await api.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["portone"] == "provider_unavailable"


async def test_the_mock_window_in_redirect_mode_hands_back_to_the_redirect_flow(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    merchant_uid = (await api.post("/certifications/prepare", json={"subject": "acct-9"})).json()[
        "merchant_uid"
    ]
    back_to = str(api.base_url).rstrip("/") + "/certifications/redirect"
    async with httpx.AsyncClient(base_url=sandbox.url) as browser:
        window = await browser.get(
            "/sandbox/certify", params={"merchant_uid": merchant_uid, "redirect_url": back_to}
        )
        assert window.status_code == 200
        assert 'value="adult"' in window.text
        picked = await browser.post(
            "/sandbox/certify",
            data={"person": "adult", "merchant_uid": merchant_uid, "redirect_url": back_to},
        )
    assert picked.status_code == 303
    location = httpx.URL(picked.headers["location"])
    assert location.params["merchant_uid"] == merchant_uid
    assert location.params["success"] == "true"
    decided = await api.get(location.path, params=dict(location.params))
    assert decided.json()["verdict"] == "allow"


async def test_the_mock_window_refuses_odd_return_urls(sandbox: Sandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.url) as browser:
        answer = await browser.get("/sandbox/certify", params={"redirect_url": "javascript:alert(1)"})
    assert answer.status_code == 400


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def test_metrics_count_verifications_portone_calls_and_store_time(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    before = (await api.get("/metrics")).text
    await api.post("/certifications", json=await prepared_certification(api, sandbox, "adult", "acct-1"))
    await api.post("/certifications", json=await prepared_certification(api, sandbox, "minor", "acct-2"))
    replay = await prepared_certification(api, sandbox, "mvno", "acct-3")
    await api.post("/certifications", json=replay)
    assert (await api.post("/certifications", json=replay)).status_code == 409
    answer = await api.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    after = answer.text

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert grew("idgate_verifications_total", result="allow", code="") == 2
    assert grew("idgate_verifications_total", result="deny", code="") == 1
    assert grew("idgate_verifications_total", result="error", code="certification_already_used") == 1
    route = "/certifications/{imp_uid}"
    assert grew("idgate_portone_request_seconds_count", route=route, outcome="ok") == 3  # not for the replay
    assert grew("idgate_store_seconds_count", operation="write") == 3 + 3  # 3 prepares, 3 decisions
    assert metric(after, "idgate_portone_token_requests_total") >= 1
    assert "imp_" not in after.replace("imp_uid", "")  # no id is a label


@pytest.mark.parametrize(
    ("claims", "field"),
    [
        ({"name": "홍길동" * 30}, "claims.name"),
        ({"birth_date": "1990-02-31"}, "claims.birth_date"),
        ({"phone": "010-1234-5678-9999-0000"}, "claims.phone"),
        ({"name": "홍길동", "ssn": "900101-1234567"}, "ssn"),
    ],
)
async def test_bad_claims_are_400_naming_the_field_and_never_echoing_the_value(
    api: httpx.AsyncClient, sandbox: Sandbox, claims: dict[str, str], field: str
) -> None:
    body = await prepared_certification(api, sandbox, "adult")
    answer = await api.post("/certifications", json={**body, "claims": claims})
    problem = assert_problem(answer, 400, "invalid_request")
    assert field in str(problem["errors"])
    for value in claims.values():
        assert value not in answer.text
    # Nothing was decided or consumed: the same certification can still be verified.
    assert (await api.post("/certifications", json=body)).status_code == 200
