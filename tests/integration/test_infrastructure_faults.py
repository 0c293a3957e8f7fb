"""What an unlucky operator does to a running server: swap the keyring, break it, delete the database.
Each must stop verifications with an honest 5xx that consumes nothing, and /readyz must say why."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any

import httpx

from idgate.adapters.crypto import Keyring, KeyringSource
from idgate.entrypoints.settings import Settings
from tests.conftest import Sandbox, only_sqlite, prepared_certification
from tests.databases import TestDatabase
from tests.e2e.test_cli import assert_clean_failure, idgate

# The server looks at the keyring file at most once a second.
NOTICED = 1.1


async def verify(api: httpx.AsyncClient, body: dict[str, str]) -> httpx.Response:
    return await api.post("/certifications", json=body)


def consumed(database: TestDatabase, imp_uid: str) -> bool:
    return bool(database.rows("select 1 from consumed_certifications where imp_uid = ?", [imp_uid]))


def keyring_text(settings: Settings) -> str:
    return Path(settings.keyring.path).read_text()


def replace_keyring(settings: Settings, keyring: Keyring | str) -> None:
    path = Path(settings.keyring.path)
    path.unlink()
    if isinstance(keyring, str):
        path.write_text(keyring)
        path.chmod(0o600)
    else:
        KeyringSource(path).save(keyring, create=True)


def problem(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["code"] == code
    return body


async def test_a_keyring_swapped_under_a_running_server_is_refused(
    api: httpx.AsyncClient, sandbox: Sandbox, settings: Settings, database: TestDatabase
) -> None:
    first = await verify(api, await prepared_certification(api, sandbox, "adult", "acct-1"))
    assert first.json()["verdict"] == "allow"
    original = keyring_text(settings)

    replace_keyring(settings, Keyring.generate())  # valid, but not the one the identities were written with
    await asyncio.sleep(NOTICED)
    body = await prepared_certification(api, sandbox, "adult", "acct-2")
    refused = problem(await verify(api, body), 500, "keyring_mismatch")
    assert "keyring" not in refused["detail"].split(";")[1]  # the client learns no path or key id
    assert not consumed(database, body["imp_uid"])
    ready = await api.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["keyring"] == "keyring_mismatch"

    replace_keyring(settings, original)  # the right keyring back: the person is still bound to acct-1
    await asyncio.sleep(NOTICED)
    again = await verify(api, body)
    assert again.json()["verdict"] == "deny"
    assert [r["code"] for r in again.json()["reasons"]] == ["age_ok", "identity_bound_elsewhere"]


async def test_a_wrong_keyring_stops_serve_and_keys_status_names_it(
    sandbox: Sandbox, tmp_path: Path, database: TestDatabase
) -> None:
    env = {
        "IDGATE_PORTONE_URL": sandbox.url,
        "IDGATE_PORTONE_IMP_KEY": "sandbox_imp_key",
        "IDGATE_PORTONE_IMP_SECRET": "sandbox_imp_secret",
        "IDGATE_DATABASE_URL": database.url,
        "IDGATE_KEYRING_PATH": str(tmp_path / "keyring.json"),
    }
    assert (await idgate("keys", "generate", env=env)).code == 0
    assert (await idgate("verify", await sandbox.certify("adult"), "--subject", "acct-1", env=env)).code == 0
    (tmp_path / "keyring.json").unlink()
    assert (await idgate("keys", "generate", env=env)).code == 0  # a fresh keyring, same key ids

    serve = await idgate("serve", "--port", "0", env=env)
    assert_clean_failure(
        serve, 4, "keyring_mismatch", "encryption key 1 is not the key the database recorded"
    )
    status = await idgate("keys", "status", env=env)
    assert status.code == 4
    assert "mismatch" in status.out
    assert "index key 1 is not the key the database recorded" in status.err
    other = await idgate("verify", await sandbox.certify("adult"), "--subject", "acct-2", env=env)
    assert_clean_failure(other, 4, "keyring_mismatch")
    assert database.rows("select subject from identities") == [("acct-1",)]


async def test_a_broken_keyring_file_fails_verifications_with_503_and_consumes_nothing(
    api: httpx.AsyncClient, sandbox: Sandbox, settings: Settings, database: TestDatabase
) -> None:
    original = keyring_text(settings)
    replace_keyring(settings, "{ this is not a keyring")
    await asyncio.sleep(NOTICED)
    body = await prepared_certification(api, sandbox, "adult", "acct-1")
    refused = problem(await verify(api, body), 503, "keyring_unavailable")
    assert "not a keyring" not in refused["detail"]
    assert not consumed(database, body["imp_uid"])
    ready = await api.get("/readyz")
    assert (ready.status_code, ready.json()["checks"]["keyring"]) == (503, "keyring_unavailable")

    replace_keyring(settings, original)
    await asyncio.sleep(NOTICED)
    retried = await verify(api, body)  # the user's verification was not used up
    assert retried.status_code == 200
    assert retried.json()["verdict"] == "allow"
    assert (await api.get("/readyz")).status_code == 200


@only_sqlite
async def test_a_deleted_database_file_answers_503_instead_of_losing_decisions(
    api: httpx.AsyncClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    assert (
        await verify(api, await prepared_certification(api, sandbox, "adult", "acct-1"))
    ).status_code == 200
    body = await prepared_certification(api, sandbox, "minor", "acct-2")
    for name in ("idgate.db", "idgate.db-wal", "idgate.db-shm"):
        if (tmp_path / name).exists():
            os.unlink(tmp_path / name)
    problem(await verify(api, body), 503, "store_unavailable")
    problem(await api.post("/certifications/prepare", json={}), 503, "store_unavailable")
    ready = await api.get("/readyz")
    assert (ready.status_code, ready.json()["checks"]["store"]) == (503, "store_unavailable")
    if (tmp_path / "idgate.db").exists():  # a connection attempt may leave an empty file: nothing in it
        with sqlite3.connect(tmp_path / "idgate.db") as db:
            assert db.execute("select count(*) from sqlite_master").fetchone() == (0,)
