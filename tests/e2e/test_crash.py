"""`kill -9` of a server in the middle of verifications: every decision a client was told about is on
disk, and nothing is half-written (an imp_uid consumed without its decision, or the reverse)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import date
from pathlib import Path

import httpx

from tests.conftest import Sandbox
from tests.databases import TestDatabase
from tests.e2e.test_cli import idgate, idgate_serve


async def test_kill_9_mid_load_loses_no_acknowledged_decision(
    sandbox: Sandbox, tmp_path: Path, database: TestDatabase
) -> None:
    env = {
        "IDGATE_PORTONE_URL": sandbox.url,
        "IDGATE_PORTONE_IMP_KEY": "sandbox_imp_key",
        "IDGATE_PORTONE_IMP_SECRET": "sandbox_imp_secret",
        "IDGATE_DATABASE_URL": database.url,
        "IDGATE_HTTP_PREPARE_RATE_LIMIT": "0",  # 120 prepares from one address
        "IDGATE_KEYRING_PATH": str(tmp_path / "keyring.json"),
        "IDGATE_AUDIT_SIGNING_KEY_PATH": str(tmp_path / "log-signing-key.pem"),
    }
    assert (await idgate("keys", "generate", env=env)).code == 0
    persons = [sandbox.state.mint_person(date(1990, 1, 1)).id for _ in range(120)]
    acknowledged: dict[str, str] = {}  # imp_uid -> decision_id the client received
    async with idgate_serve(env) as (api, process):
        bodies = []
        for n, person in enumerate(persons):
            prepared = (await api.post("/certifications/prepare", json={"subject": f"acct-{n}"})).json()
            merchant_uid = prepared["merchant_uid"]
            bodies.append(
                {"imp_uid": await sandbox.certify(person, merchant_uid), "merchant_uid": merchant_uid}
            )
        answered = asyncio.Event()

        async def verify(body: dict[str, str]) -> None:
            with contextlib.suppress(httpx.TransportError):
                answer = await api.post("/certifications", json=body)
                if answer.status_code == 200:
                    acknowledged[body["imp_uid"]] = answer.json()["decision_id"]
                    if len(acknowledged) >= 30:
                        answered.set()

        gate = asyncio.Semaphore(16)

        async def limited(body: dict[str, str]) -> None:
            async with gate:
                await verify(body)

        load = asyncio.gather(*(limited(body) for body in bodies))
        await asyncio.wait_for(answered.wait(), 60)
        process.send_signal(signal.SIGKILL)
        await load
    assert 30 <= len(acknowledged) < len(bodies)  # killed mid-load, after some answers
    decisions = dict(database.rows("select imp_uid, decision_id from decisions"))
    consumed = dict(database.rows("select imp_uid, decision_id from consumed_certifications"))
    bound = {row[0] for row in database.rows("select subject from identities")}
    assert decisions == consumed  # nothing half-written
    for imp_uid, decision_id in acknowledged.items():
        assert decisions.get(imp_uid) == decision_id, "an acknowledged decision was lost"
    assert len(bound) == len(decisions)  # every allow bound its identity, in the same transaction
