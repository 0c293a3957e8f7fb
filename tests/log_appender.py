"""Appends decisions to the log from a process of its own, through the real store, as a worker does.

    python -m tests.log_appender DATABASE_URL KEYRING_PATH PREFIX COUNT

Tests start several at once against one PostgreSQL database and then check the log they built.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from idgate.adapters.clock import SystemClock
from idgate.adapters.crypto import KeyringSource
from idgate.adapters.store import DatabaseOptions, SqlVerificationStore, VerifiedKeyring, open_database
from idgate.domain import Outcome, PolicyDecision, Verdict, new_decision_id
from tests.fakes import a_certification, a_result


async def append(url: str, keyring: Path, prefix: str, count: int) -> None:
    clock = SystemClock()
    async with open_database(DatabaseOptions(url=url, pool_size=4)) as db:
        store = SqlVerificationStore(
            db, VerifiedKeyring(KeyringSource(keyring).current, db.engine, clock), clock
        )

        async def one(n: int) -> None:
            verdict = Verdict.DENY if n % 2 else Verdict.ALLOW
            decision = PolicyDecision(
                decision_id=new_decision_id(clock.now()),
                imp_uid=f"imp_{prefix}{n:08d}",
                subject=f"{prefix}-{n}",
                verdict=verdict,
                results=(a_result(Outcome.ALLOW if verdict is Verdict.ALLOW else Outcome.DENY),),
                decided_at=clock.now(),
                policy_set="sha256:concurrent",
                provider="danal",
            )
            certification = a_certification(
                imp_uid=decision.imp_uid, ci=f"ci-{prefix}-{n}", di=f"di-{prefix}-{n}"
            )
            await store.record_verification(
                decision=decision, certification=certification, prepared_merchant_uid=None
            )

        for start in range(0, count, 4):  # four at a time: appends from one process overlap too
            await asyncio.gather(*(one(n) for n in range(start, min(start + 4, count))))


if __name__ == "__main__":
    url, keyring, prefix, count = sys.argv[1:5]
    asyncio.run(append(url, Path(keyring), prefix, int(count)))
