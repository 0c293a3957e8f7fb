"""`idgate reviews list|resolve`, run as an operator at a terminal would run them.

On SQLite only: the commands are the use cases the integration tests run on both databases
(test_reviews_api); here what is checked is the terminal's side of them."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest

from idgate.adapters.crypto import Keyring, KeyringSource, SigningKeyFile
from tests.conftest import Sandbox, only_sqlite
from tests.databases import TestDatabase
from tests.e2e.test_cli import assert_clean_failure, idgate
from tests.e2e.test_cli_operations import status_rows as table_rows


@pytest.fixture
async def reviewing(sandbox: Sandbox, tmp_path: Path, database: TestDatabase) -> dict[str, str]:
    """An installation where a duplicate is reviewed, not denied; the adult is bound to acct-1."""
    KeyringSource(tmp_path / "keyring.json").save(Keyring.generate(), create=True)
    SigningKeyFile(tmp_path / "log-signing-key.pem").create()
    config = tmp_path / "idgate.toml"
    config.write_text('[policies.duplicate_identity]\non_bound = "review"\n')
    env = {
        "IDGATE_CONFIG": str(config),
        "IDGATE_KEYRING_PATH": str(tmp_path / "keyring.json"),
        "IDGATE_AUDIT_SIGNING_KEY_PATH": str(tmp_path / "log-signing-key.pem"),
        "IDGATE_PORTONE_URL": sandbox.url,
        "IDGATE_PORTONE_IMP_KEY": "sandbox_imp_key",
        "IDGATE_PORTONE_IMP_SECRET": "sandbox_imp_secret",
        "IDGATE_DATABASE_URL": database.url,
        "COLUMNS": "200",  # rich fits tables to the terminal; wide enough that no cell wraps
    }
    bound = await idgate("verify", await sandbox.certify("adult"), "--subject", "acct-1", env=env)
    assert bound.code == 0, bound
    return env


async def review(sandbox: Sandbox, env: dict[str, str], subject: str) -> str:
    made = await idgate("verify", await sandbox.certify("adult"), "--subject", subject, "--json", env=env)
    assert made.code == 1, made  # review
    decision = json.loads(made.out)
    assert decision["verdict"] == "review"
    decision_id: str = decision["decision_id"]
    return decision_id


@only_sqlite
async def test_list_then_resolve_allow_once_the_person_is_free(
    sandbox: Sandbox, reviewing: dict[str, str]
) -> None:
    case_id = await review(sandbox, reviewing, "acct-2")
    listed = await idgate("reviews", "list", env=reviewing)
    assert listed.code == 0, listed
    [row] = table_rows(listed.out)
    assert (row[0], row[1], row[4]) == (case_id, "acct-2", "duplicate_identity:identity_bound_elsewhere")
    as_json = json.loads((await idgate("reviews", "list", "--json", env=reviewing)).out)
    assert [c["decision_id"] for c in as_json["cases"]] == [case_id]
    assert as_json["next_before"] is None

    refused = await idgate("reviews", "resolve", case_id, "--verdict", "allow", "--note", "ok", env=reviewing)
    assert_clean_failure(refused, 2, "identity_already_bound", "the case stays open")
    assert (await idgate("erase", "--subject", "acct-1", env=reviewing)).code == 0
    note = "the old account was closed by its owner"
    resolved = await idgate(
        "reviews", "resolve", case_id, "--verdict", "allow", "--note", note, "--json", env=reviewing
    )
    assert resolved.code == 0, resolved
    answer = json.loads(resolved.out)
    assert (answer["verdict"], answer["subject"]) == ("allow", "acct-2")
    assert answer["resolved_by"] == f"cli:{getpass.getuser()}"

    again = await idgate("reviews", "resolve", case_id, "--verdict", "deny", "--note", "no", env=reviewing)
    assert_clean_failure(again, 2, "review_case_closed", "resolved already (allow")
    assert table_rows((await idgate("reviews", "list", env=reviewing)).out) == []

    newest = json.loads((await idgate("decisions", "list", "--limit", "1", "--json", env=reviewing)).out)
    record = newest["decisions"][0]["record"]
    assert (record["decision_id"], record["channel"]) == (answer["logged_as"], "review")
    assert record["caller"] == f"cli:{getpass.getuser()}"
    assert note not in json.dumps(record)
    verified = await idgate("decisions", "verify", env=reviewing)
    assert (verified.code, verified.out.startswith("OK: 3 records")) == (0, True), verified


@only_sqlite
async def test_resolve_deny_and_what_is_refused(sandbox: Sandbox, reviewing: dict[str, str]) -> None:
    case_id = await review(sandbox, reviewing, "acct-2")
    denied = await idgate(
        "reviews", "resolve", case_id, "--verdict", "deny", "--note", "not them", env=reviewing
    )
    assert denied.code == 0, denied
    assert f"deny  {case_id}: the identity is discarded; nothing bound to acct-2" in denied.out

    unknown = await idgate(
        "reviews",
        "resolve",
        "dec_01KJP29SWEDHY554H935BG1A15",
        "--verdict",
        "deny",
        "--note",
        "n",
        env=reviewing,
    )
    assert_clean_failure(unknown, 2, "review_case_not_found")
    malformed = await idgate(
        "reviews", "resolve", "dec_nope", "--verdict", "deny", "--note", "n", env=reviewing
    )
    assert_clean_failure(malformed, 2, "invalid_request", "Crockford")
    no_note = await idgate("reviews", "resolve", case_id, "--verdict", "deny", env=reviewing)
    assert_clean_failure(no_note, 2, "--note")
    wrong = await idgate("reviews", "resolve", case_id, "--verdict", "review", "--note", "n", env=reviewing)
    assert_clean_failure(wrong, 2, "--verdict")
    bad_cursor = await idgate("reviews", "list", "--before", "nope", env=reviewing)
    assert_clean_failure(bad_cursor, 2, "invalid_request")
