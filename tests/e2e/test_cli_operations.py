"""Operator commands as a user runs them: keys, tokens, erasure, and the keyring refusals."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import Sandbox
from tests.databases import TestDatabase
from tests.e2e.test_cli import assert_clean_failure, free_port, idgate


def status_rows(table: str) -> list[list[str]]:
    """The rows of the table `idgate keys status` prints, as lists of cell texts."""
    return [
        [cell.strip() for cell in line.strip("│┃").split("│")]
        for line in table.splitlines()
        if line.startswith("│")
    ]


def env_for(sandbox: Sandbox, tmp_path: Path, database: TestDatabase) -> dict[str, str]:
    return {
        "IDGATE_PORTONE_URL": sandbox.url,
        "IDGATE_PORTONE_IMP_KEY": "sandbox_imp_key",
        "IDGATE_PORTONE_IMP_SECRET": "sandbox_imp_secret",
        "IDGATE_DATABASE_URL": database.url,
        "IDGATE_KEYRING_PATH": str(tmp_path / "keys" / "keyring.json"),
        "IDGATE_AUDIT_SIGNING_KEY_PATH": str(tmp_path / "keys" / "log-signing-key.pem"),
    }


async def test_keys_tokens_and_erasure(sandbox: Sandbox, tmp_path: Path, database: TestDatabase) -> None:
    env = env_for(sandbox, tmp_path, database)
    keyring = tmp_path / "keys" / "keyring.json"
    assert_clean_failure(
        await idgate("verify", await sandbox.certify("adult"), env=env), 5, "idgate keys generate"
    )

    generated = await idgate("keys", "generate", env=env)
    assert generated.code == 0
    assert oct(keyring.stat().st_mode & 0o777) == "0o600"
    assert_clean_failure(await idgate("keys", "generate", env=env), 2, "already exists")

    for n, person in enumerate(["adult", "leap-day", "mvno"]):
        run = await idgate("verify", await sandbox.certify(person), "--subject", f"acct-{n}", env=env)
        assert run.code == 0, run
    duplicate = await idgate("verify", await sandbox.certify("adult"), "--subject", "acct-9", env=env)
    assert duplicate.code == 1
    assert "identity_bound_elsewhere" in duplicate.out

    rotated = await idgate("keys", "rotate", env=env)
    assert "new primary encryption key 2" in rotated.out
    assert_clean_failure(
        await idgate("keys", "retire", "1", env=env),
        2,
        "key_in_use",
        "still covers 3 identities",
        "keys reencrypt",
    )
    assert_clean_failure(await idgate("keys", "retire", "2", env=env), 2, "key_is_primary")
    assert_clean_failure(await idgate("keys", "retire", "7", env=env), 2, "key_not_found")
    status = await idgate("keys", "status", env=env)
    assert status.code == 0, status
    assert status_rows(status.out) == [
        ["encryption", "1", "active", "3", "ok"],
        ["encryption", "2", "primary", "0", "ok"],
        ["index", "1", "primary", "3", "ok"],
    ]
    reencrypted = await idgate("keys", "reencrypt", env=env)
    assert reencrypted.code == 0
    assert "re-encrypted 3 identities" in reencrypted.out
    assert "rows/s" in reencrypted.out
    assert (await idgate("keys", "retire", "1", env=env)).code == 0
    assert database.rows("select distinct key_id from identities") == [(2,)]

    created = await idgate("tokens", "create", "--role", "service", "--name", "shop", env=env)
    token = created.out.strip()
    assert token.startswith("idgt_")
    assert "shown only now" in created.err
    listed = await idgate("tokens", "list", env=env)
    assert "shop" in listed.out
    assert token not in listed.out
    assert_clean_failure(
        await idgate("tokens", "create", "--role", "admin", "--name", "shop", env=env), 2, "token_name_taken"
    )
    assert (await idgate("tokens", "revoke", "shop", env=env)).code == 0
    assert_clean_failure(await idgate("tokens", "revoke", "shop", env=env), 2, "token_not_found")
    stored = database.scalar("select token_hash from api_tokens")
    assert token not in stored

    assert (await idgate("erase", "--subject", "acct-0", env=env)).code == 0
    assert_clean_failure(await idgate("erase", "--subject", "acct-0", env=env), 2, "identity_not_found")
    again = await idgate("verify", await sandbox.certify("adult"), "--subject", "acct-9", env=env)
    assert again.code == 0, again  # the person is free to bind again


async def test_serve_refuses_a_keyring_others_can_read(
    sandbox: Sandbox, tmp_path: Path, database: TestDatabase
) -> None:
    env = env_for(sandbox, tmp_path, database)
    assert (await idgate("keys", "generate", env=env)).code == 0
    os.chmod(tmp_path / "keys" / "keyring.json", 0o644)
    run = await idgate("serve", "--port", str(free_port()), env=env)
    assert_clean_failure(run, 5, "readable by others", "chmod 600")
