"""The keyring, checked against the database before any identity is written or read under it.

A different but valid keyring decrypts nothing and matches no blind index, so without this check a
swapped keyring would let an already-bound person bind again and would leave identities under two
keyrings. The database records a keyed check value of every key it has seen (`key_checks`); at
start-up and whenever the keyring file changes, every key is compared with its record, and every key
id that stored identities use must be in the keyring. For keys in use that were never recorded (a
database older than the records), one row is trial-decrypted instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from idgate.adapters.crypto import BlindIndexer, FieldCipher, Keyring, check_value, same
from idgate.domain import Clock, IdentityIntegrityError, KeyringMismatch, KeyringUnavailable

from .errors import translated_errors
from .identities import INDEXED, IdentityCodec
from .tables import IDENTITIES, IDENTITY_INDEX, KEY_CHECKS

Ring = Literal["encryption", "index"]
RINGS: tuple[Ring, ...] = ("encryption", "index")
Verdict = Literal["ok", "unused", "mismatch", "missing", "retired_in_use"]


@dataclass(frozen=True, slots=True)
class KeyFinding:
    """How one key of the keyring (or one key id the database uses) stands against the database."""

    ring: Ring
    key_id: int
    status: str  # the keyring's status for the key, or "absent"
    identities: int  # identities whose envelopes (encryption) or complete digests (index) use the key
    verdict: Verdict

    @property
    def problem(self) -> bool:
        return self.verdict not in ("ok", "unused")

    def describe(self) -> str:
        return {
            "ok": f"{self.ring} key {self.key_id} matches the database",
            "unused": f"{self.ring} key {self.key_id} is not in use",
            "mismatch": f"{self.ring} key {self.key_id} is not the key the database recorded",
            "missing": f"{self.ring} key {self.key_id} covers {self.identities} identities but is not "
            "in the keyring",
            "retired_in_use": f"{self.ring} key {self.key_id} is retired but covers {self.identities} "
            "identities",
        }[self.verdict]


async def key_usage(connection: AsyncConnection) -> dict[Ring, dict[int, int]]:
    """Identities per encryption key and per (complete) index key."""
    by_key = await connection.execute(
        sa.select(IDENTITIES.c.key_id, sa.func.count()).group_by(IDENTITIES.c.key_id)
    )
    by_index = await connection.execute(
        sa.select(IDENTITIES.c.index_key_id, sa.func.count()).group_by(IDENTITIES.c.index_key_id)
    )
    return {
        "encryption": {int(k): int(n) for k, n in by_key.all()},
        "index": {int(k): int(n) for k, n in by_index.all()},
    }


async def inspect_keyring(engine: AsyncEngine, keyring: Keyring) -> list[KeyFinding]:
    """Compare every key with the database: recorded check values, key ids in use, trial decryption."""
    async with translated_errors(), engine.connect() as connection:
        usage = await key_usage(connection)
        recorded = {
            (row.ring, row.key_id): bytes(row.check_value)
            for row in await connection.execute(sa.select(KEY_CHECKS))
        }
        findings = []
        for ring_name in RINGS:
            ring = keyring.ring(index=ring_name == "index")
            used = usage[ring_name]
            for key_id in sorted(set(ring.keys) | set(used)):
                key = ring.keys.get(key_id)
                count = used.get(key_id, 0)
                verdict: Verdict
                if key is None:
                    verdict = "missing" if count else "unused"
                elif (ring_name, key_id) in recorded:
                    matches = same(recorded[ring_name, key_id], check_value(key, ring_name))
                    verdict = "ok" if matches else "mismatch"
                elif count:
                    verdict = (
                        "ok" if await _opens_a_row(connection, keyring, ring_name, key_id) else "mismatch"
                    )
                else:
                    verdict = "unused"
                if verdict == "ok" and key is not None and key.status == "retired" and count:
                    verdict = "retired_in_use"
                status = key.status if key is not None else "absent"
                findings.append(KeyFinding(ring_name, key_id, status, count, verdict))
    return findings


async def _opens_a_row(connection: AsyncConnection, keyring: Keyring, ring: Ring, key_id: int) -> bool:
    """Trial: does this key open (encryption) or reproduce the digests of (index) one stored row?"""
    codec = IdentityCodec(FieldCipher(lambda: keyring), BlindIndexer(lambda: keyring))
    column = IDENTITIES.c.key_id if ring == "encryption" else IDENTITIES.c.index_key_id
    row = (await connection.execute(sa.select(IDENTITIES).where(column == key_id).limit(1))).first()
    if row is None:
        return True
    try:
        values = codec.plaintexts(row)
    except IdentityIntegrityError:
        return False
    if ring == "encryption":
        return True
    stored = {
        entry.kind: bytes(entry.digest)
        for entry in await connection.execute(
            sa.select(IDENTITY_INDEX.c.kind, IDENTITY_INDEX.c.digest).where(
                IDENTITY_INDEX.c.identity_id == row.id, IDENTITY_INDEX.c.index_key_id == key_id
            )
        )
    }
    for kind in INDEXED:
        value = values.get(kind)
        if value and kind in stored and not same(stored[kind], codec.digests(kind, value)[key_id]):
            return False
    return True


async def record_check_values(engine: AsyncEngine, keyring: Keyring, clock: Clock) -> None:
    """Remember every key of this keyring; a key already recorded keeps its first record."""
    rows = [
        {
            "ring": ring_name,
            "key_id": key.id,
            "check_value": check_value(key, ring_name),
            "recorded_at": clock.now(),
        }
        for ring_name in RINGS
        for key in keyring.ring(index=ring_name == "index").keys.values()
    ]
    async with translated_errors(), engine.begin() as connection:
        await connection.execute(_insert_new(engine.dialect.name), rows)


def _insert_new(dialect: str) -> sa.Insert:
    if dialect == "postgresql":
        return postgresql.insert(KEY_CHECKS).on_conflict_do_nothing()
    return sqlite.insert(KEY_CHECKS).on_conflict_do_nothing()


def mismatch_message(findings: Iterable[KeyFinding]) -> str:
    problems = "; ".join(f.describe() for f in findings if f.problem)
    return (
        f"the keyring does not match the database ({problems}). Nothing was written. Restore the "
        "keyring the stored identities were written with; `idgate keys status` shows every key."
    )


class VerifiedKeyring:
    """The keyring that was last checked against the database; the store encrypts only under it.

    `refresh()` runs before every operation that uses keys. It costs an identity comparison while the
    keyring is unchanged, and a check against the database once when it changes (a rotation, or a
    file swapped by mistake, which is refused with KeyringMismatch).
    """

    def __init__(self, source: Callable[[], Keyring], engine: AsyncEngine, clock: Clock) -> None:
        """`source` returns the current keyring (KeyringSource.current); it may raise KeyringUnavailable."""
        self._source = source
        self._engine = engine
        self._clock = clock
        self._verified: Keyring | None = None
        self._lock = asyncio.Lock()

    def __call__(self) -> Keyring:
        if self._verified is None:
            raise KeyringUnavailable("the keyring was not checked against the database yet.")
        return self._verified

    async def refresh(self) -> Keyring:
        keyring = self._source()
        if keyring is self._verified:
            return keyring
        async with self._lock:
            if keyring is not self._verified:
                findings = await inspect_keyring(self._engine, keyring)
                if any(f.problem for f in findings):
                    self._verified = None
                    raise KeyringMismatch(mismatch_message(findings))
                await record_check_values(self._engine, keyring, self._clock)
                self._verified = keyring
        return keyring
