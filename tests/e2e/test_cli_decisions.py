"""`idgate decisions …` and `idgate access-log list`, run as an auditor at a terminal would run them.

On SQLite only: the commands are the use cases the integration tests run on both databases
(test_audit_api, test_log_tampering); here what is checked is the terminal's side of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from idgate.adapters.crypto import Keyring, KeyringSource, SigningKeyFile
from tests.conftest import Sandbox, only_sqlite
from tests.databases import TestDatabase
from tests.e2e.test_cli import idgate
from tests.e2e.test_cli_operations import status_rows as table_rows


@pytest.fixture
async def logged(sandbox: Sandbox, tmp_path: Path, database: TestDatabase) -> dict[str, str]:
    """An installation whose log holds three decisions (allow, deny, allow), made by `idgate verify`."""
    KeyringSource(tmp_path / "keyring.json").save(Keyring.generate(), create=True)
    SigningKeyFile(tmp_path / "log-signing-key.pem").create()
    env = {
        "IDGATE_KEYRING_PATH": str(tmp_path / "keyring.json"),
        "IDGATE_AUDIT_SIGNING_KEY_PATH": str(tmp_path / "log-signing-key.pem"),
        "IDGATE_PORTONE_URL": sandbox.url,
        "IDGATE_PORTONE_IMP_KEY": "sandbox_imp_key",
        "IDGATE_PORTONE_IMP_SECRET": "sandbox_imp_secret",
        "IDGATE_DATABASE_URL": database.url,
        "COLUMNS": "200",  # rich fits tables to the terminal; wide enough that no cell wraps
    }
    for n, person in enumerate(["adult", "minor", "leap-day"]):
        made = await idgate("verify", await sandbox.certify(person), "--subject", f"acct-{n}", env=env)
        assert made.code in (0, 1), made
    return env


@only_sqlite
async def test_list_show_prove_and_checkpoint(logged: dict[str, str]) -> None:
    listed = await idgate("decisions", "list", env=logged)
    assert listed.code == 0, listed
    rows = table_rows(listed.out)
    assert [(r[0], r[2]) for r in rows] == [("3", "allow"), ("2", "deny"), ("1", "allow")]
    assert "age_limit:under_age" in rows[1][6]

    denials = json.loads((await idgate("decisions", "list", "--verdict", "deny", "--json", env=logged)).out)
    assert [d["seq"] for d in denials["decisions"]] == [2]
    decision_id = denials["decisions"][0]["record"]["decision_id"]
    paged = await idgate("decisions", "list", "--limit", "2", env=logged)
    assert "older decisions: --before 2" in paged.err

    naive = await idgate("decisions", "list", "--since", "2026-12-01T00:00", env=logged)
    assert naive.code == 2
    assert "time zone" in naive.err
    assert "Traceback" not in naive.err

    shown = await idgate("decisions", "show", decision_id, env=logged)
    assert shown.code == 0, shown
    assert "under_age" in shown.out
    assert "verifies against the current tree of size 3" in shown.out
    missing = await idgate("decisions", "show", "dec_nope", env=logged)
    assert (missing.code, "decision_not_found" in missing.err) == (2, True)

    signed = await idgate("decisions", "checkpoint", env=logged)
    assert signed.code == 0, signed
    assert signed.out.splitlines()[1:3][0] == "3"
    proven = json.loads((await idgate("decisions", "prove", decision_id, "--json", env=logged)).out)
    assert proven["proof"]["verifies"] is True
    assert proven["checkpoint"] == signed.out
    consistent = await idgate("decisions", "prove", "--old", "1", "--new", "3", env=logged)
    assert consistent.code == 0, consistent
    assert "the tree of 3 entries extends the one of 1: verifies" in consistent.out
    neither = await idgate("decisions", "prove", env=logged)
    assert neither.code == 2

    key = await idgate("decisions", "public-key", env=logged)
    assert key.out.startswith("-----BEGIN PUBLIC KEY-----")

    trail = table_rows((await idgate("access-log", "list", env=logged)).out)
    assert [r[2] for r in trail[:3]] == ["consistency", "show", "show"]
    assert all(r[1].startswith("cli:") for r in trail)
    assert ["list", "verdict=deny"] in [r[2:4] for r in trail]


@only_sqlite
async def test_export_then_verify_and_a_row_edited_in_sql(
    logged: dict[str, str], database: TestDatabase, tmp_path: Path
) -> None:
    exported = await idgate("decisions", "export", "--output", str(tmp_path / "log.jsonl"), env=logged)
    assert exported.code == 0, exported
    assert "wrote 3 decisions" in exported.err
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
    as_csv = await idgate("decisions", "export", "--format", "csv", "--verdict", "allow", env=logged)
    assert as_csv.out.splitlines()[0].startswith("seq,decision_id,")
    assert len(as_csv.out.splitlines()) == 3
    nowhere = await idgate("decisions", "export", "--output", str(tmp_path / "no" / "log.jsonl"), env=logged)
    assert nowhere.code == 2
    assert not (tmp_path / "no").exists()

    fine = await idgate("decisions", "verify", env=logged)
    assert (fine.code, fine.out.startswith("OK: 3 records")) == (0, True), fine

    record = bytes(database.scalar("SELECT record FROM decisions WHERE seq = 2"))
    database.execute(
        "UPDATE decisions SET record = ? WHERE seq = 2", [record.replace(b'"deny"', b'"allow"', 1)]
    )
    tampered = await idgate("decisions", "verify", env=logged)
    assert tampered.code == 1, tampered
    assert tampered.out.startswith("TAMPERED: first bad seq 2 (edited)")
    report = json.loads((await idgate("decisions", "verify", "--json", env=logged)).out)
    assert (report["ok"], report["first_bad_seq"], report["kind"]) == (False, 2, "edited")
