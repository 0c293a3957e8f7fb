"""Stored identities on a real SQLite file, driven through the HTTP API against the sandbox."""

from __future__ import annotations

import asyncio
import base64
import logging
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from idgate.adapters.clock import SystemClock
from idgate.adapters.crypto import KeyringSource
from idgate.adapters.store import SqlAccessTokens, create_engine
from idgate.domain import Role
from idgate.entrypoints.settings import Settings
from tests.conftest import Sandbox, SettingsFactory, prepared_certification, running_api


async def verify(api: httpx.AsyncClient, sandbox: Sandbox, person: str, subject: str) -> dict[str, Any]:
    answer = await api.post(
        "/certifications", json=await prepared_certification(api, sandbox, person, subject)
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def token(settings: Settings, role: Role, name: str) -> dict[str, str]:
    engine = create_engine(settings.database.url)
    try:
        value = await SqlAccessTokens(engine, SystemClock()).create(name, role)
    finally:
        await engine.dispose()
    return {"Authorization": f"Bearer {value}"}


def reason(decision: dict[str, Any], policy: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in decision["reasons"] if r["policy"] == policy)
    return found


def database_files(tmp_path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in tmp_path.glob("idgate.db*")}


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
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        for index, person in enumerate(sandbox.state.persons):
            await verify(api, sandbox, person, f"acct-{index}")
        headers = await token(settings, Role.SERVICE, "backend")
        read = await api.get("/identities/acct-0", headers=headers)
        assert read.json()["name"] == "홍길동"
        # The files are scanned while the server still holds them open, WAL not yet checkpointed.
        files = database_files(tmp_path)
    assert {"idgate.db", "idgate.db-wal", "idgate.db-shm"} <= set(files)
    assert sum(b"identities" in f for f in files.values())  # the scan reads real content
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


async def test_concurrent_verifications_of_one_person_for_two_accounts_bind_once(
    api: httpx.AsyncClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    bodies = [await prepared_certification(api, sandbox, "adult", f"race-{i}") for i in range(2)]
    answers = await asyncio.gather(*(api.post("/certifications", json=b) for b in bodies))
    verdicts = sorted(a.json()["verdict"] for a in answers)
    assert verdicts == ["allow", "deny"]
    with sqlite3.connect(tmp_path / "idgate.db") as db:
        assert db.execute("select count(*) from identities").fetchone() == (1,)
        assert db.execute("select count(*) from decisions").fetchone() == (2,)


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
    api: httpx.AsyncClient, sandbox: Sandbox, settings: Settings, tmp_path: Path
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

    engine = create_engine(settings.database.url)
    try:
        assert await SqlAccessTokens(engine, SystemClock()).revoke("shop-backend")
    finally:
        await engine.dispose()
    assert (await api.get("/identities/acct-m", headers=service)).status_code == 401
    with sqlite3.connect(tmp_path / "idgate.db") as db:
        log = db.execute("select actor, role, action, subject from identity_access").fetchall()
    assert log == [("shop-backend", "service", "read", "acct-m")]


async def test_erasure_removes_the_identity_and_lets_the_person_verify_again(
    api: httpx.AsyncClient, sandbox: Sandbox, settings: Settings, tmp_path: Path
) -> None:
    await verify(api, sandbox, "adult", "acct-e")
    with sqlite3.connect(tmp_path / "idgate.db") as db:
        envelopes = [bytes(v) for v in db.execute("select ci, phone, name from identities").fetchone()]
    admin = await token(settings, Role.ADMIN, "dpo")
    service = await token(settings, Role.SERVICE, "backend")
    assert (await api.delete("/identities/acct-e", headers=service)).status_code == 403
    assert (await api.delete("/identities/acct-e", headers=admin)).status_code == 204
    assert (await api.delete("/identities/acct-e", headers=admin)).status_code == 404
    assert (await api.get("/identities/acct-e", headers=service)).status_code == 404
    files = database_files(tmp_path)
    for envelope in envelopes:
        for name, content in files.items():
            assert envelope not in content, f"an erased envelope lingers in {name}"
    with sqlite3.connect(tmp_path / "idgate.db") as db:
        assert db.execute("select count(*) from identity_index").fetchone() == (0,)
        assert db.execute("select count(*) from decisions where subject = 'acct-e'").fetchone() == (1,)
    # Another account can now take the person (the binding is gone), and so can the old one.
    assert (await verify(api, sandbox, "adult", "acct-f"))["verdict"] == "allow"


async def test_a_tampered_row_is_an_integrity_error_never_someone_elses_data(
    api: httpx.AsyncClient, sandbox: Sandbox, settings: Settings, tmp_path: Path
) -> None:
    await verify(api, sandbox, "adult", "acct-a")
    await verify(api, sandbox, "minor", "acct-b")  # denied: not stored
    await verify(api, sandbox, "leap-day", "acct-c")
    with sqlite3.connect(tmp_path / "idgate.db") as db:
        db.execute(
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
