"""Claims over HTTP: what the user typed reaches identity_match, and nothing else ever sees it."""

from __future__ import annotations

import json

import structlog

from tests.conftest import Sandbox, SettingsFactory, prepared_certification, running_api

POLICIES = {"enabled": ["age_limit", "identity_match"], "options": {}}
WRONG_NAME = "김엉뚱"


async def test_claims_decide_through_identity_match_and_are_never_echoed_or_logged(
    sandbox: Sandbox, settings_for: SettingsFactory
) -> None:
    adult = sandbox.state.persons["adult"].record
    settings = settings_for(sandbox, policies=POLICIES)
    with structlog.testing.capture_logs() as logs:
        async with running_api(settings) as api:
            right = await prepared_certification(api, sandbox, "adult", subject="acct-1")
            claims = {"name": f" {adult['name']} ", "birth_date": adult["birthday"], "phone": adult["phone"]}
            matched = await api.post("/certifications", json={**right, "claims": claims})
            wrong = await prepared_certification(api, sandbox, "adult", subject="acct-2")
            mismatched = await api.post(
                "/certifications", json={**wrong, "claims": {**claims, "name": WRONG_NAME}}
            )
            unclaimed = await prepared_certification(api, sandbox, "adult")  # no subject: nothing binds
            abstained = await api.post("/certifications", json=unclaimed)

    assert matched.status_code == 200, matched.text
    decision = matched.json()
    assert decision["verdict"] == "allow"
    assert [r["code"] for r in decision["reasons"]] == ["age_ok", "claims_match"]

    refused = mismatched.json()
    assert refused["verdict"] == "deny"
    [reason] = [r for r in refused["reasons"] if r["policy"] == "identity_match"]
    assert reason["code"] == "claims_mismatch"
    assert "name" in reason["message"]

    assert [r["code"] for r in abstained.json()["reasons"]] == ["age_ok", "no_claims"]

    assert any(entry["event"] == "decision" for entry in logs)  # the server's log lines were captured
    seen = matched.text + mismatched.text + json.dumps(logs, default=str, ensure_ascii=False)
    for value in (WRONG_NAME, adult["name"], adult["phone"], adult["birthday"]):
        assert value not in seen
