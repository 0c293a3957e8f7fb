"""Rows that only serve replay protection do not grow without bound: a running server purges them on
its schedule, `idgate db purge` on demand, and decisions stay."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from idgate.domain import Outcome, PolicyDecision, PreparedRequest, Verdict, new_decision_id
from tests.conftest import Sandbox, SettingsFactory, running_api
from tests.databases import TestDatabase
from tests.e2e.test_cli import idgate
from tests.fakes import a_certification, a_result
from tests.stores import sql_store

NOW = datetime.now(UTC)


async def old_and_new_rows(database: TestDatabase, folder: Path) -> None:
    """A prepared request that expired three days ago and one that is fresh; an imp_uid consumed sixty
    days ago and one consumed now, each with its decision."""
    async with sql_store(database, folder) as store:
        for name, at in (("old", NOW - timedelta(days=3)), ("new", NOW)):
            prepared = PreparedRequest(
                merchant_uid=f"idg_{name}", subject=None, created_at=at, expires_at=at + timedelta(minutes=15)
            )
            await store.save_prepared_request(prepared)
        for name, at in (("1", NOW - timedelta(days=60)), ("2", NOW)):
            decision = PolicyDecision(
                decision_id=new_decision_id(at),
                imp_uid=f"imp_{name}",
                subject=None,
                verdict=Verdict.DENY,
                results=(a_result(Outcome.DENY),),
                decided_at=at,
                policy_set="sha256:x",
                provider="danal",
            )
            certification = replace(a_certification(), imp_uid=f"imp_{name}")
            await store.record_verification(
                decision=decision, certification=certification, prepared_merchant_uid=None
            )


def left(database: TestDatabase) -> tuple[list[str], list[str], int]:
    prepared = [r[0] for r in database.rows("select merchant_uid from prepared_requests order by 1")]
    consumed = [r[0] for r in database.rows("select imp_uid from consumed_certifications order by 1")]
    return prepared, consumed, database.scalar("select count(*) from decisions")


async def test_a_running_server_purges_on_its_schedule(
    sandbox: Sandbox, settings_for: SettingsFactory, database: TestDatabase, tmp_path: Path
) -> None:
    await old_and_new_rows(database, tmp_path)
    settings = settings_for(sandbox, retention={"purge_interval_seconds": 1})
    async with running_api(settings):
        for _ in range(50):  # the first purge comes 0.5 to 1.5 s after start
            if left(database)[0] == ["idg_new"]:
                break
            await asyncio.sleep(0.1)
    assert left(database) == (["idg_new"], ["imp_2"], 2)  # decisions are never purged


async def test_db_purge_deletes_what_retention_allows(
    sandbox: Sandbox, settings_for: SettingsFactory, database: TestDatabase, tmp_path: Path
) -> None:
    await old_and_new_rows(database, tmp_path)
    env = {"IDGATE_DATABASE_URL": database.url, "IDGATE_KEYRING_PATH": str(tmp_path / "keyring.json")}
    longer = await idgate("db", "purge", env={**env, "IDGATE_RETENTION_CONSUMED_CERTIFICATION_DAYS": "90"})
    assert longer.code == 0, longer
    assert "purged 1 prepared requests, 0 consumed imp_uids" in longer.out  # sixty days is within ninety
    run = await idgate("db", "purge", env=env)
    assert "purged 0 prepared requests, 1 consumed imp_uids" in run.out
    assert left(database) == (["idg_new"], ["imp_2"], 2)
