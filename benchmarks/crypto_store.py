"""Benchmark of identities at rest: what encryption and blind indexing cost per identity, and how
fast `idgate keys reencrypt` moves a population to new keys.

    .venv/bin/python -m benchmarks.crypto_store --identities 100000

Figures are printed, never asserted: compare the ratios printed in one run, machines here are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace

import sqlalchemy as sa

from idgate.adapters.clock import SystemClock
from idgate.adapters.crypto import BlindIndexer, FieldCipher, Keyring, KeyringSource
from idgate.adapters.store import IdentityCodec, KeyMaintenance, SqlVerificationStore, create_engine
from idgate.adapters.store.tables import IDENTITIES, IDENTITY_INDEX
from idgate.domain import Carrier, Certification, Gender

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def person(n: int) -> Certification:
    return Certification(
        imp_uid=f"imp_{n}",
        merchant_uid=None,
        provider="danal",
        name="홍길동" if n % 2 else "김민지",
        gender=Gender.MALE,
        birth_date=date(1970 + n % 40, 1 + n % 12, 1 + n % 28),
        phone=f"010{n:08d}",
        carrier=Carrier.SKT,
        is_foreigner=False,
        ci=base64.b64encode(hashlib.sha512(n.to_bytes(8, "big")).digest()).decode(),
        di=base64.b64encode(hashlib.sha384(n.to_bytes(8, "big")).digest()).decode(),
        certified=True,
        certified_at=NOW,
    )


def per_call(fn: Callable[[int], object], count: int, rounds: int = 5) -> float:
    """Median seconds per call over `rounds` runs of `count` calls."""
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        for n in range(count):
            fn(n)
        timings.append((time.perf_counter() - start) / count)
    return statistics.median(timings)


def cpu_costs(codec: IdentityCodec, count: int) -> None:
    people = [person(n) for n in range(count)]
    values = [
        {"ci": c.ci, "di": c.di, "phone": c.phone, "name": c.name, "birth_date": c.birth_date.isoformat()}
        for c in people
    ]
    row_ids = [str(uuid.uuid4()) for _ in range(count)]

    def plain(n: int) -> object:  # what storing in plaintext would cost: encode the five fields
        return {k: (v or "").encode() for k, v in values[n].items()}

    def protect(n: int) -> object:  # five envelopes and the CI, DI and phone digests
        return codec.sealed(row_ids[n], values[n]), list(codec.index_entries(row_ids[n], values[n]))

    sealed = [codec.sealed(row_ids[n], values[n]) for n in range(count)]
    rows = [SimpleNamespace(id=row_ids[n], **sealed[n]) for n in range(count)]
    baseline = per_call(plain, count)
    protected = per_call(protect, count)
    opened = per_call(lambda n: codec.plaintexts(rows[n]), count)  # type: ignore[arg-type]
    lookup = per_call(lambda n: codec.digests("ci", people[n].ci or ""), count)
    print(f"per identity, CPU only (median of 5 runs of {count:,}):")
    print(f"  encode 5 fields as plaintext    {baseline * 1e6:8.2f} µs")
    print(
        f"  encrypt 5 fields + 3 indexes    {protected * 1e6:8.2f} µs   ({protected / baseline:,.0f}× plaintext)"
    )
    print(f"  decrypt 5 fields                {opened * 1e6:8.2f} µs")
    print(f"  CI blind index for a lookup     {lookup * 1e6:8.2f} µs")


async def reencryption_rate(count: int, batch: int) -> None:
    folder = tempfile.TemporaryDirectory()
    engine = create_engine(f"sqlite+aiosqlite:///{Path(folder.name) / 'bench.db'}", write_transactions=True)
    source = KeyringSource(Path(folder.name) / "keyring.json")
    source.save(Keyring.generate(), create=True)
    codec = IdentityCodec(FieldCipher(source.current), BlindIndexer(source.current))
    await SqlVerificationStore.create_schema_on(engine)

    start = time.perf_counter()
    chunk = 5_000
    for first in range(0, count, chunk):
        rows: list[dict[str, object]] = []
        index_rows: list[dict[str, object]] = []
        for n in range(first, min(first + chunk, count)):
            c = person(n)
            row = codec.new_row(f"subject-{n}", c, NOW)
            rows.append(row)
            index_rows += codec.index_entries(str(row["id"]), {"ci": c.ci, "di": c.di, "phone": c.phone})
        async with engine.begin() as connection:
            await connection.execute(sa.insert(IDENTITIES), rows)
            await connection.execute(sa.insert(IDENTITY_INDEX), index_rows)
    filled = time.perf_counter() - start
    print(f"\nfilled SQLite with {count:,} identities in {filled:.1f} s ({count / filled:,.0f} identities/s)")

    jobs = KeyMaintenance(engine, source, SystemClock())  # what `idgate keys rotate|reencrypt` run
    await jobs.rotate()
    await jobs.rotate(index=True)
    if await jobs.pending() != count:
        raise SystemExit("the rotation did not mark every identity as outdated")
    start = time.perf_counter()
    rewritten = await jobs.reencrypt_all(batch_size=batch)
    seconds = time.perf_counter() - start
    if await jobs.pending() != 0 or rewritten != count:
        raise SystemExit(f"re-encryption left work undone ({rewritten:,} of {count:,})")
    print(
        f"re-encrypted and re-indexed {rewritten:,} identities (batch {batch}) in {seconds:.1f} s: "
        f"{rewritten / seconds:,.0f} rows/s; at that rate 1,000,000 identities take {1e6 / (rewritten / seconds) / 60:.1f} min"
    )
    await engine.dispose()
    folder.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--identities", type=int, default=100_000, help="population for the re-encryption run"
    )
    parser.add_argument("--cpu-sample", type=int, default=10_000, help="identities per timing round")
    parser.add_argument("--batch", type=int, default=1_000, help="re-encryption batch size")
    args = parser.parse_args()
    keys = Keyring.generate()
    cpu_costs(IdentityCodec(FieldCipher(lambda: keys), BlindIndexer(lambda: keys)), args.cpu_sample)
    asyncio.run(reencryption_rate(args.identities, args.batch))


if __name__ == "__main__":
    main()
