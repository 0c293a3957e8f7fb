"""Stored identities on a real database (SQLite and PostgreSQL), driven through the HTTP API against the
sandbox."""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from idgate.adapters.crypto import KeyringSource
from idgate.domain import Role
from idgate.entrypoints.settings import Settings
from tests.conftest import Sandbox, SettingsFactory, prepared_certification, running_api
from tests.databases import TestDatabase
from tests.stores import api_token, revoke_token


async def verify(api: httpx.AsyncClient, sandbox: Sandbox, person: str, subject: str) -> dict[str, Any]:
    answer = await api.post(
        "/certifications", json=await prepared_certification(api, sandbox, person, subject)
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def token(settings: Settings, role: Role, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await api_token(settings, role, name)}"}


def reason(decision: dict[str, Any], policy: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in decision["reasons"] if r["policy"] == policy)
    return found


def pii_forms(sandbox: Sandbox) -> dict[str, bytes]:
    """Every personal value of every sandbox person, in each spelling that could be stored."""
    forms: dict[str, bytes] = {}
    for person in sandbox.state.persons.values():
        r = person.record
        forms[f"{person.id}/name"] = r["name"].encode()
        forms[f"{person.id}/birthday"] = r["birthday"].encode()
        forms[f"{person.id}/birthday-digits"] = r["birthday"].replace("-", "").encode()
        if "phone" in r:
            p = r["phone"]
            forms[f"{person.id}/phone"] = p.encode()
            forms[f"{person.id}/phone-dashed"] = f"{p[:3]}-{p[3:7]}-{p[7:]}".encode()
        for field in ("unique_key", "unique_in_site"):
            if field in r:
                forms[f"{person.id}/{field}"] = r[field].encode()
                forms[f"{person.id}/{field}-raw"] = base64.b64decode(r[field])
    return forms


async def test_no_personal_data_at_rest_or_in_logs(
    api: httpx.AsyncClient,
    sandbox: Sandbox,
    settings: Settings,
    database: TestDatabase,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        for index, person in enumerate(sandbox.state.persons):
            await verify(api, sandbox, person, f"acct-{index}")
        headers = await token(settings, Role.SERVICE, "backend")
        read = await api.get("/identities/acct-0", headers=headers)
        assert read.json()["name"] == "홍길동"
        # Scanned while the server still holds the database open (SQLite: the WAL not yet checkpointed).
        files = database.stored_bytes()
    if database.kind == "sqlite":
        assert {"idgate.db", "idgate.db-wal", "idgate.db-shm"} <= set(files)
        assert sum(b"identities" in f for f in files.values())  # the scan reads real content
    else:
        assert b"danal" in files["table identities"]  # the scan reads real content
    logs = caplog.text + repr(events)
    keyring = KeyringSource(Path(settings.keyring.path)).load()
    secrets = {
        f"key-{k.id}": k.material for k in [*keyring.encryption.keys.values(), *keyring.index.keys.values()]
    }
    for label, needle in {**pii_forms(sandbox), **secrets}.items():
        for name, content in files.items():
            assert needle not in content, f"{label} in plaintext in {name}"
        assert needle.decode("utf-8", "replace") not in logs, f"{label} in the logs"
    for material in secrets.values():
        assert base64.b64encode(material).decode() not in logs


async def test_one_person_one_account(api: httpx.AsyncClient, sandbox: Sandbox) -> None:
    first = await verify(api, sandbox, "dual-phone-a", "acct-1")
    assert first["verdict"] == "allow"
    again = await verify(api, sandbox, "dual-phone-a", "acct-1")  # the same account verifying again
    assert again["verdict"] == "allow"
    other = await verify(api, sandbox, "dual-phone-b", "acct-2")  # same CI, another phone, another account
    assert other["verdict"] == "deny"
    assert reason(other, "duplicate_identity")["code"] == "identity_bound_elsewhere"


@pytest.mark.parametrize("with_ci", [True, False], ids=["by-ci", "by-di-without-ci"])
async def test_concurrent_verifications_of_one_person_for_several_accounts_bind_once(
    api: httpx.AsyncClient, sandbox: Sandbox, database: TestDatabase, with_ci: bool
) -> None:
    minted = sandbox.state.mint_person(date(1990, 1, 1))
    if not with_ci:  # a certificate with a DI and no CI: the database's DI index keeps it to one account
        del minted.record["unique_key"]
    person = minted.id
    bodies = [await prepared_certification(api, sandbox, person, f"race-{i}") for i in range(6)]
    answers = await asyncio.gather(*(api.post("/certifications", json=b) for b in bodies))
    verdicts = sorted(a.json()["verdict"] for a in answers)
    assert verdicts == ["allow"] + ["deny"] * 5
    assert database.scalar("select count(*) from identities") == 1
    assert database.scalar("select count(*) from decisions") == 6


async def test_kakao_without_ci_follows_the_configured_fallback(
    sandbox: Sandbox, settings_for: SettingsFactory
) -> None:
    strict = {"options": {"duplicate_identity": {"without_ci": "deny"}}}
    async with running_api(settings_for(sandbox, policies=strict)) as api:
        denied = await verify(api, sandbox, "kakao-no-ci", "acct-k")
    assert denied["verdict"] == "deny"
    assert reason(denied, "duplicate_identity")["code"] == "no_ci"
    async with running_api(settings_for(sandbox)) as api:  # default: DI fallback, abstain without either
        allowed = await verify(api, sandbox, "kakao-no-ci", "acct-k2")
    assert allowed["verdict"] == "allow"
    assert reason(allowed, "duplicate_identity")["outcome"] == "abstain"


async def test_reading_identities_needs_the_service_role(
    api: httpx.AsyncClient, sandbox: Sandbox, settings: Settings, database: TestDatabase
) -> None:
    await verify(api, sandbox, "mvno", "acct-m")
    service = await token(settings, Role.SERVICE, "shop-backend")
    admin = await token(settings, Role.ADMIN, "ops")

    missing = await api.get("/identities/acct-m")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert (
        await api.get("/identities/acct-m", headers={"Authorization": "Bearer idgt_nope"})
    ).status_code == 401
    wrong_role = await api.get("/identities/acct-m", headers=admin)
    assert wrong_role.status_code == 403
    assert wrong_role.json()["code"] == "forbidden"

    read = await api.get("/identities/acct-m", headers=service)
    assert read.status_code == 200
    person = sandbox.state.persons["mvno"].record
    assert read.json() == {
        "subject": "acct-m",
        "name": person["name"],
        "birth_date": person["birthday"],
        "gender": "male",
        "phone": person["phone"],
        "carrier": "LGU_MVNO",
        "is_foreigner": False,
        "provider": "danal",
        "certified_at": read.json()["certified_at"],
    }
    assert (await api.get("/identities/acct-unknown", headers=service)).status_code == 404

    assert await revoke_token(settings, "shop-backend")
    assert (await api.get("/identities/acct-m", headers=service)).status_code == 401
    log = database.rows("select actor, role, action, subject from identity_access")
    assert log == [("shop-backend", "service", "read", "acct-m")]


async def test_erasure_removes_the_identity_and_lets_the_person_verify_again(
    api: httpx.AsyncClient, sandbox: Sandbox, settings: Settings, database: TestDatabase
) -> None:
    await verify(api, sandbox, "adult", "acct-e")
    envelopes = list(database.rows("select ci, phone, name from identities")[0])
    admin = await token(settings, Role.ADMIN, "dpo")
    service = await token(settings, Role.SERVICE, "backend")
    assert (await api.delete("/identities/acct-e", headers=service)).status_code == 403
    assert (await api.delete("/identities/acct-e", headers=admin)).status_code == 204
    assert (await api.delete("/identities/acct-e", headers=admin)).status_code == 404
    assert (await api.get("/identities/acct-e", headers=service)).status_code == 404
    # SQLite: secure_delete and a WAL checkpoint leave no byte of it in the files. PostgreSQL keeps a
    # deleted row's bytes in its files until the space is reused (docs/operations.md), so there it
    # is what the database answers that is checked.
    files = database.stored_bytes()
    for envelope in envelopes:
        for name, content in files.items():
            if database.kind == "sqlite" or name.startswith("table "):
                assert envelope not in content, f"an erased envelope lingers in {name}"
    assert database.scalar("select count(*) from identity_index") == 0
    assert database.scalar("select count(*) from decisions where subject = 'acct-e'") == 1
    # Another account can now take the person (the binding is gone), and so can the old one.
    assert (await verify(api, sandbox, "adult", "acct-f"))["verdict"] == "allow"


async def test_a_tampered_row_is_an_integrity_error_never_someone_elses_data(
    api: httpx.AsyncClient, sandbox: Sandbox, settings: Settings, database: TestDatabase
) -> None:
    await verify(api, sandbox, "adult", "acct-a")
    await verify(api, sandbox, "minor", "acct-b")  # denied: not stored
    await verify(api, sandbox, "leap-day", "acct-c")
    database.execute(
        "update identities set name = (select name from identities where subject = 'acct-c') where subject = 'acct-a'"
    )
    service = await token(settings, Role.SERVICE, "backend")
    answer = await api.get("/identities/acct-a", headers=service)
    assert answer.status_code == 500
    assert answer.json()["code"] == "identity_integrity_failed"
    assert "이윤년" not in answer.text
    assert "홍길동" not in answer.text
    assert (await api.get("/identities/acct-c", headers=service)).status_code == 200
    assert (await api.get("/identities/acct-b", headers=service)).status_code == 404  # a deny stores nothing


async def test_concurrent_verifications_of_one_account_by_different_people_all_answer(
    api: httpx.AsyncClient, sandbox: Sandbox, database: TestDatabase
) -> None:
    people = [sandbox.state.mint_person(date(1990, 1, 1)).id for _ in range(8)]
    bodies = [await prepared_certification(api, sandbox, person, "acct-shared") for person in people]
    answers = await asyncio.gather(*(api.post("/certifications", json=b) for b in bodies))
    # Each binding replaces the one before it; the database makes them take turns, none fails.
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    assert {a.json()["verdict"] for a in answers} == {"allow"}
    assert database.rows("select subject from identities") == [("acct-shared",)]
    assert database.scalar("select count(*) from identity_index") == 3  # CI, DI and phone of the last one
