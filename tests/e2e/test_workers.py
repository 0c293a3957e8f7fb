"""`idgate serve --workers N` on PostgreSQL, under load from several client processes at once: every
imp_uid consumed once, every person bound to one account, no decision lost, each worker with its own
PortOne token; and a worker killed with SIGKILL mid-load loses nothing while the others carry on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Sandbox, only_postgresql
from tests.databases import TestDatabase
from tests.e2e.test_cli import IDGATE, free_port, idgate
from tests.integration.test_http_api import metric

pytestmark = only_postgresql
WORKERS = 2
LOAD_CLIENT = Path(__file__).resolve().parents[1] / "load_client.py"


@pytest.fixture
async def env(sandbox: Sandbox, tmp_path: Path, database: TestDatabase) -> dict[str, str]:
    made = {
        "IDGATE_PORTONE_URL": sandbox.url,
        "IDGATE_PORTONE_IMP_KEY": "sandbox_imp_key",
        "IDGATE_PORTONE_IMP_SECRET": "sandbox_imp_secret",
        "IDGATE_DATABASE_URL": database.url,
        "IDGATE_KEYRING_PATH": str(tmp_path / "keyring.json"),
        "IDGATE_AUDIT_SIGNING_KEY_PATH": str(tmp_path / "log-signing-key.pem"),
        "IDGATE_HTTP_PREPARE_RATE_LIMIT": "0",  # every prepare of the test comes from one address
        "IDGATE_DATABASE_POOL_SIZE": "4",
    }
    assert (await idgate("keys", "generate", env=made)).code == 0
    return made


@contextlib.asynccontextmanager
async def serving_workers(env: dict[str, str], workers: int) -> AsyncIterator[tuple[str, int]]:
    """`idgate serve --workers N` on a free port; yields its URL and the parent's pid once it answers."""
    port = free_port()
    command = [IDGATE, "--log-level", "warning", "serve", "--workers", str(workers), "--port", str(port)]
    process = await asyncio.create_subprocess_exec(
        *command, env={**os.environ, **env}, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthz")).status_code == 200 and len(
                        worker_pids(process.pid)
                    ) == workers:
                        break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("idgate serve --workers did not come up")
        yield url, process.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 30)
        assert b"Traceback" not in err, err.decode()


def worker_pids(parent: int) -> list[int]:
    """The worker processes uvicorn's supervisor started (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [
        int(pid)
        for pid in children
        if Path(f"/proc/{pid}/cmdline").exists()
        and b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


async def prepared(url: str, sandbox: Sandbox, person: str, subject: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=url) as client:
        made = await client.post("/certifications/prepare", json={"subject": subject})
    merchant_uid = made.json()["merchant_uid"]
    return {"imp_uid": await sandbox.certify(person, merchant_uid), "merchant_uid": merchant_uid}


async def load(url: str, groups: list[list[dict[str, str]]], folder: Path) -> list[dict[str, Any]]:
    """One client process per group, all at once; what every request was answered."""
    clients = []
    for n, bodies in enumerate(groups):
        (folder / f"bodies-{n}.json").write_text(json.dumps(bodies))
        clients.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(LOAD_CLIENT),
                str(folder / f"bodies-{n}.json"),
                str(folder / f"results-{n}.json"),
                "--url",
                url,
                "--concurrency",
                "6",
            )
        )
    for client in clients:
        assert await asyncio.wait_for(client.wait(), 120) == 0
    return [r for n in range(len(groups)) for r in json.loads((folder / f"results-{n}.json").read_text())]


def assert_nothing_half_written(database: TestDatabase, answers: list[dict[str, Any]]) -> dict[str, str]:
    decided = dict(database.rows("select imp_uid, decision_id from decisions"))
    consumed = dict(database.rows("select imp_uid, decision_id from consumed_certifications"))
    assert decided == consumed  # a decision exactly where an imp_uid was consumed
    assert database.scalar("select count(*) from decisions") == len(decided)  # one decision per imp_uid
    for answer in answers:
        if answer["status"] == 200:
            assert decided.get(answer["imp_uid"]) == answer["decision_id"], "a 200 without its decision"
    return decided


async def test_several_workers_share_one_database_and_agree(
    sandbox: Sandbox, env: dict[str, str], database: TestDatabase, tmp_path: Path
) -> None:
    async with serving_workers(env, WORKERS) as (url, _):
        people = [sandbox.state.mint_person(date(1990, 1, 1)).id for _ in range(90)]
        once = [await prepared(url, sandbox, p, f"acct-{n}") for n, p in enumerate(people[:60])]
        # 15 people verify for two accounts at once, from different client processes.
        twice = [
            (await prepared(url, sandbox, p, f"first-{n}"), await prepared(url, sandbox, p, f"second-{n}"))
            for n, p in enumerate(people[60:75])
        ]
        # 15 imp_uids are sent twice at once, from different client processes.
        replayed = [await prepared(url, sandbox, p, f"replay-{n}") for n, p in enumerate(people[75:])]
        tokens_before = sandbox.requests("POST /users/getToken")
        answers = await load(
            url,
            [
                once[0::3] + [a for a, _ in twice] + replayed,
                once[1::3] + [b for _, b in twice] + replayed,
                once[2::3],
            ],
            tmp_path,
        )
        tokens = sandbox.requests("POST /users/getToken") - tokens_before
        async with httpx.AsyncClient(base_url=url) as client:  # whichever worker answers counts for all
            scraped = [(await client.get("/metrics")).text for _ in range(4)]
    assert Counter(a["status"] for a in answers) == {200: len(answers) - len(replayed), 409: len(replayed)}
    decided = assert_nothing_half_written(database, answers)
    assert len(decided) == len(once) + 2 * len(twice) + len(replayed)
    by_imp_uid: dict[str, list[dict[str, Any]]] = {}
    for answer in answers:
        by_imp_uid.setdefault(answer["imp_uid"], []).append(answer)
    for body in replayed:  # one decision; the other request was told it was a replay
        assert sorted(a["status"] for a in by_imp_uid[body["imp_uid"]]) == [200, 409]
    for first, second in twice:  # one account got the person, the other was denied
        verdicts = sorted(by_imp_uid[b["imp_uid"]][0]["verdict"] for b in (first, second))
        assert verdicts == ["allow", "deny"]
    bound = database.rows("select subject from identities")
    assert len(bound) == len(once) + len(twice) + len(replayed)
    # Each worker asked for its own token once; not one per verification.
    assert 1 <= tokens <= WORKERS, tokens
    allowed = sum(a["verdict"] == "allow" for a in answers if a["status"] == 200)
    for text in scraped:
        assert metric(text, "idgate_verifications_total", result="allow", code="") == allowed
        assert metric(
            text, "idgate_verifications_total", result="error", code="certification_already_used"
        ) == len(replayed)


async def test_a_worker_killed_mid_load_loses_nothing_and_the_others_carry_on(
    sandbox: Sandbox, env: dict[str, str], database: TestDatabase, tmp_path: Path
) -> None:
    async with serving_workers(env, WORKERS) as (url, parent):
        people = [sandbox.state.mint_person(date(1990, 1, 1)).id for _ in range(240)]
        bodies = [await prepared(url, sandbox, p, f"acct-{n}") for n, p in enumerate(people)]
        victim = worker_pids(parent)[0]
        running = asyncio.create_task(load(url, [bodies[0::2], bodies[1::2]], tmp_path))
        for _ in range(3000):  # the database is the one that knows how far the load got
            if (database.scalar("select count(*) from decisions") or 0) >= 40:
                break
            await asyncio.sleep(0.01)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        answers = await running
        after = time.monotonic() - killed_at
        # uvicorn's supervisor starts a replacement.
        for _ in range(200):
            if len(worker_pids(parent)) == WORKERS and victim not in worker_pids(parent):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("no worker replaced the one killed")
        statuses = Counter(a["status"] for a in answers)
        assert set(statuses) <= {200, 0}, statuses  # 0: the connection died with its worker
        assert statuses[200] >= len(bodies) - 6 * 2, statuses  # at most what was in flight on the victim
        assert after > 0  # the rest of the load was served by the surviving worker and the replacement
        decided = assert_nothing_half_written(database, answers)
        # A request that died with its worker either committed first or left its imp_uid unused.
        async with httpx.AsyncClient(base_url=url) as client:
            for answer in (a for a in answers if a["status"] == 0):
                retry = await client.post(
                    "/certifications", json=next(b for b in bodies if b["imp_uid"] == answer["imp_uid"])
                )
                if answer["imp_uid"] in decided:
                    assert retry.status_code == 409
                else:
                    assert retry.status_code == 200, retry.text
    assert_nothing_half_written(database, [])
    assert database.scalar("select count(*) from decisions") == len(bodies)
