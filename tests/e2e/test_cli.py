"""The installed `idgate` command, run as a user would run it, against the sandbox over sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from idgate.adapters.crypto import Keyring, KeyringSource, SigningKeyFile
from tests.conftest import Sandbox, only_sqlite
from tests.databases import TestDatabase

IDGATE = str(Path(sys.executable).parent / "idgate")


@dataclass
class Run:
    code: int
    out: str
    err: str


async def idgate(*args: str, env: dict[str, str] | None = None) -> Run:
    process = await asyncio.create_subprocess_exec(
        IDGATE,
        *args,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def env(sandbox: Sandbox, tmp_path: Path, database: TestDatabase) -> dict[str, str]:
    KeyringSource(tmp_path / "keyring.json").save(Keyring.generate(), create=True)
    SigningKeyFile(tmp_path / "log-signing-key.pem").create()
    return {
        "IDGATE_KEYRING_PATH": str(tmp_path / "keyring.json"),
        "IDGATE_AUDIT_SIGNING_KEY_PATH": str(tmp_path / "log-signing-key.pem"),
        "IDGATE_PORTONE_URL": sandbox.url,
        "IDGATE_PORTONE_IMP_KEY": "sandbox_imp_key",
        "IDGATE_PORTONE_IMP_SECRET": "sandbox_imp_secret",
        "IDGATE_PORTONE_BACKOFF": "0.01",
        "IDGATE_DATABASE_URL": database.url,
    }


def assert_clean_failure(run: Run, code: int, *phrases: str) -> None:
    assert run.code == code, run
    assert "Traceback" not in run.err + run.out
    for phrase in phrases:
        assert phrase in run.err


async def test_verify_exit_codes(sandbox: Sandbox, env: dict[str, str]) -> None:
    adult = await sandbox.certify("adult")
    allowed = await idgate("verify", adult, "--subject", "user-1", env=env)
    assert allowed.code == 0, allowed
    assert allowed.out.startswith("allow  dec_")
    assert "age_limit 1.1.0: allow age_ok" in allowed.out

    denied = await idgate("verify", await sandbox.certify("minor"), "--json", env=env)
    assert denied.code == 1
    body = json.loads(denied.out)
    assert body["verdict"] == "deny"
    assert body["reasons"][0]["code"] == "under_age"

    assert_clean_failure(await idgate("verify", adult, env=env), 2, "certification_already_used")
    assert_clean_failure(await idgate("verify", "../users/getToken", env=env), 2, "invalid_imp_uid")
    assert_clean_failure(await idgate("verify", "imp_404", env=env), 2, "certification_not_found")

    await sandbox.fault("status", count=10, status=500, path="/certifications/")
    assert_clean_failure(
        await idgate("verify", await sandbox.certify("adult"), env=env), 3, "provider_unavailable"
    )


@only_sqlite
@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:///{tmp}/a-file/idgate.db",  # under a file, not a folder
        "postgresql+asyncpg://postgres@127.0.0.1:{closed}/idgate",  # nothing listens there
    ],
    ids=["sqlite", "postgresql"],
)
async def test_an_unreachable_store_exits_3(
    sandbox: Sandbox, env: dict[str, str], tmp_path: Path, url: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    broken = {**env, "IDGATE_DATABASE_URL": url.format(tmp=tmp_path, closed=free_port())}
    for command in (["verify", await sandbox.certify("adult")], ["db", "upgrade"], ["serve", "--port", "0"]):
        assert_clean_failure(await idgate(*command, env=broken), 3, "store_unavailable")


async def test_serve_without_credentials_says_where_to_set_them() -> None:
    run = await idgate("serve", "--port", str(free_port()))
    assert_clean_failure(run, 5, "IDGATE_PORTONE_IMP_KEY", "IDGATE_PORTONE_IMP_SECRET", "idgate demo")


async def test_configuration_mistakes_are_named(tmp_path: Path) -> None:
    (tmp_path / "typo.toml").write_text('[portone]\nimp_kee = "x"\n')
    assert_clean_failure(
        await idgate("--config", str(tmp_path / "typo.toml"), "serve"),
        5,
        "unknown key `imp_kee` in [portone]",
    )
    (tmp_path / "badpolicy.toml").write_text("[policies.age_limt]\nmin_age = 19\n")
    run = await idgate(
        "--config",
        str(tmp_path / "badpolicy.toml"),
        "serve",
        env={"IDGATE_PORTONE_IMP_KEY": "k", "IDGATE_PORTONE_IMP_SECRET": "s"},
    )
    assert_clean_failure(run, 5, "[policies.age_limt] sets options for a policy that is not enabled")
    (tmp_path / "badname.toml").write_text('[policies]\nenabled = ["age_limt"]\n')
    run = await idgate(
        "--config",
        str(tmp_path / "badname.toml"),
        "serve",
        env={"IDGATE_PORTONE_IMP_KEY": "k", "IDGATE_PORTONE_IMP_SECRET": "s"},
    )
    assert_clean_failure(run, 5, "unknown policy 'age_limt'", "installed policies: age_limit")
    assert_clean_failure(
        await idgate("serve", env={"IDGATE_PORTONE_IMP_KY": "x"}),
        5,
        "unknown environment variable IDGATE_PORTONE_IMP_KY",
    )
    assert_clean_failure(
        await idgate("--config", str(tmp_path / "missing.toml"), "serve"), 5, "does not exist", "idgate init"
    )


@contextlib.asynccontextmanager
async def idgate_serve(
    env: dict[str, str],
) -> AsyncIterator[tuple[httpx.AsyncClient, asyncio.subprocess.Process]]:
    """`idgate serve` as a separate process on a free port; yields a client once /healthz answers."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        IDGATE,
        "serve",
        "--port",
        str(port),
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(200):
            try:
                if (await client.get("/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
        else:
            process.kill()
            _, err = await process.communicate()
            pytest.fail(f"idgate serve did not come up: {err.decode()}")
        yield client, process
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    await process.wait()


@pytest.fixture
async def served(env: dict[str, str]) -> AsyncIterator[tuple[httpx.AsyncClient, asyncio.subprocess.Process]]:
    async with idgate_serve(env) as running:
        yield running


async def test_the_readmes_first_steps_init_credentials_serve_verify(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    first = await idgate("init")
    assert first.code == 0, first
    assert "wrote idgate.toml" in first.out
    keyring = tmp_path / ".idgate" / "keyring.json"
    assert oct(keyring.stat().st_mode & 0o777) == "0o600"
    assert "[policies.age_limit]" in (tmp_path / "idgate.toml").read_text()
    listed = json.loads((await idgate("policies", "list", "--json")).out)["policies"]
    assert [p["name"] for p in listed if p["enabled"]] == ["age_limit", "duplicate_identity"]

    credentials = {  # the sandbox stands in for PortOne
        "IDGATE_PORTONE_URL": sandbox.url,
        "IDGATE_PORTONE_IMP_KEY": "sandbox_imp_key",
        "IDGATE_PORTONE_IMP_SECRET": "sandbox_imp_secret",
    }
    async with idgate_serve(credentials) as (api, _):
        prepared = (await api.post("/certifications/prepare", json={"subject": "acct-1"})).json()
        imp_uid = await sandbox.certify("adult", prepared["merchant_uid"])
        answer = await api.post(
            "/certifications", json={"imp_uid": imp_uid, "merchant_uid": prepared["merchant_uid"]}
        )
    assert answer.status_code == 200, answer.text
    decision = answer.json()
    assert decision["verdict"] == "allow"
    assert [(r["policy"], r["code"]) for r in decision["reasons"]] == [
        ("age_limit", "age_ok"),
        ("duplicate_identity", "identity_unique"),
    ]


async def test_init_never_overwrites(tmp_path: Path) -> None:
    assert (await idgate("init")).code == 0
    keyring = tmp_path / ".idgate" / "keyring.json"
    original = keyring.read_bytes()
    assert_clean_failure(await idgate("init"), 2, "already exists")
    (tmp_path / "idgate.toml").unlink()
    again = await idgate("init")
    assert again.code == 0, again
    assert "kept the keyring already at" in again.out
    assert keyring.read_bytes() == original


async def test_serve_end_to_end_without_personal_data_in_its_logs(
    sandbox: Sandbox, served: tuple[httpx.AsyncClient, asyncio.subprocess.Process]
) -> None:
    api, process = served
    verdicts = []
    for person in ("adult", "minor", "foreigner", "kakao-no-ci"):
        merchant_uid = (await api.post("/certifications/prepare", json={"subject": f"acct-{person}"})).json()[
            "merchant_uid"
        ]
        imp_uid = await sandbox.certify(person, merchant_uid)
        answer = await api.post("/certifications", json={"imp_uid": imp_uid, "merchant_uid": merchant_uid})
        verdicts.append(answer.json()["verdict"])
    assert verdicts == ["allow", "deny", "allow", "allow"]
    assert (await api.get("/readyz")).status_code == 200
    process.terminate()
    _, err = await process.communicate()
    logs = err.decode()
    assert "decision" in logs
    assert "event='policies' enabled='age_limit,duplicate_identity' policy_set='sha256:" in logs
    assert "Traceback" not in logs
    for test_person in sandbox.state.persons.values():
        for field in ("name", "phone", "unique_key", "unique_in_site", "birthday"):
            value = test_person.record.get(field)
            if value:
                assert value not in logs, f"{field} of {test_person.id} leaked into the log"
    assert "sandbox_imp_secret" not in logs


async def test_demo_check_runs_the_whole_flow(tmp_path: Path) -> None:
    run = await idgate("demo", "--check", "--port", str(free_port()), "--sandbox-port", str(free_port()))
    assert run.code == 0, run
    assert "adult → allow (age_limit=age_ok, duplicate_identity=identity_unique)" in run.out
    assert "minor → deny (age_limit=under_age, duplicate_identity=identity_unique)" in run.out
    assert "/demo" in run.out
    assert "curl -s -X POST" in run.out
    assert (tmp_path / ".idgate" / "demo.db").exists()


async def test_demo_refuses_a_busy_port_clearly() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        run = await idgate(
            "demo", "--check", "--port", str(busy.getsockname()[1]), "--sandbox-port", str(free_port())
        )
    assert_clean_failure(run, 5, "cannot listen on", "--port")


@only_sqlite
async def test_verify_reads_claims_from_a_file_and_refuses_bad_ones_without_echoing_them(
    sandbox: Sandbox, env: dict[str, str], tmp_path: Path
) -> None:
    adult = await sandbox.certify("adult")
    missing = await idgate("verify", adult, "--claims", str(tmp_path / "nowhere.json"), env=env)
    assert_clean_failure(missing, 2, "cannot read the claims file")
    bad = tmp_path / "claims.json"
    bad.write_text(json.dumps({"name": "김철수", "birth_date": "1990-13-01"}), encoding="utf-8")
    refused = await idgate("verify", adult, "--claims", str(bad), env=env)
    assert_clean_failure(refused, 2, "claims", "birth_date")
    assert "김철수" not in refused.out + refused.err
    assert "1990-13-01" not in refused.out + refused.err
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"name": "김철수", "phone": "010-0000-0000"}), encoding="utf-8")
    decided = await idgate("verify", adult, "--claims", str(good), env=env)
    assert decided.code == 0, decided  # nothing was consumed by the refusals above
    assert "김철수" not in decided.out + decided.err
