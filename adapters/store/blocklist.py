"""The operator's blocklist in the database: BarredPeople for the `blocklist` policy, and its management.

A barred person is kept as a keyed digest of their CI under each readable index key, with a purpose
of its own: it matches neither the identities' blind indexes nor the decision log's `identity_ref`,
so the list cannot be joined to anyone's account or decisions. Lookups try every readable index key,
as identity lookups do, so the list keeps working while a new index key is rolled out. The CI is
never stored, so rows under a new key come only from adding the same CIs again (`add` fills them in
and keeps the entry); an entry whose keys are all retired bars no one, and `entries` says so.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from idgate.adapters.crypto import BlindIndexer, normalize
from idgate.domain import Clock
from idgate.domain.blocklist import BarredEntry, BlocklistChange

from .database import Database
from .errors import translated_errors
from .keyring_check import VerifiedKeyring
from .runner import Transaction, plain_sql
from .tables import BLOCKLIST, as_utc

PURPOSE = "blocklist/ci"
SHOWN_DIGITS = 12  # of a digest, in `entries`: enough to tell entries apart, too few to look anyone up
_CHUNK = 500  # digests a statement, for long lists
T = TypeVar("T")


class SqlBlocklist:
    """Implements BarredPeople (on the hot path: the runner, plain SQL) and the operators' Blocklist
    (off it: the engine)."""

    def __init__(self, database: Database, keyring: VerifiedKeyring, clock: Clock) -> None:
        self._engine = database.engine
        self._dialect = database.dialect
        self._sql = database.runner
        self._keyring = keyring
        self._indexer = BlindIndexer(keyring)
        self._clock = clock

    def _digests(self, ci: str) -> dict[int, str]:
        """The CI's digest under every readable index key, by key id."""
        return self._indexer.pseudonyms(PURPOSE, normalize("ci", ci).decode())

    # ---- BarredPeople -------------------------------------------------------------------------
    async def is_barred(self, ci: str) -> bool:
        await self._keyring.refresh()
        digests = self._digests(ci)

        async def lookup(sql: Transaction) -> bool:
            # A point lookup in the primary key per index key (normally one).
            for key_id, digest in digests.items():
                if await sql.first(_BARRED, {"index_key_id": key_id, "digest": digest}) is not None:
                    return True
            return False

        return await self._sql.read(lookup)

    # ---- management ---------------------------------------------------------------------------
    async def add(self, cis: Sequence[str], *, added_by: str) -> BlocklistChange:
        await self._keyring.refresh()
        people = [self._digests(ci) for ci in cis]
        now = self._clock.now()
        async with translated_errors(), self._engine.begin() as connection:
            stored = await _stored(connection, people)
            rows: list[dict[str, object]] = []
            added = 0
            for digests in people:
                found = [stored[pair] for pair in digests.items() if pair in stored]
                if not found:
                    added += 1
                entry_id = found[0] if found else str(uuid.uuid4())
                for key_id, digest in digests.items():
                    if (key_id, digest) not in stored:
                        stored[key_id, digest] = entry_id  # a CI given twice gets one entry
                        rows.append(
                            {
                                "index_key_id": key_id,
                                "digest": digest,
                                "entry_id": entry_id,
                                "added_at": now,
                                "added_by": added_by,
                            }
                        )
            for chunk in _chunks(rows):
                # A concurrent add of the same person has already written the row: it stands.
                await connection.execute(self._insert_new(), chunk)
        return BlocklistChange(changed=added, unchanged=len(people) - added)

    async def remove(self, cis: Sequence[str]) -> BlocklistChange:
        await self._keyring.refresh()
        people = [self._digests(ci) for ci in cis]
        async with translated_errors(), self._engine.begin() as connection:
            stored = await _stored(connection, people)
            entries = {stored[pair] for digests in people for pair in digests.items() if pair in stored}
            for chunk in _chunks(sorted(entries)):
                # Every row of the entry, those under retired keys too.
                await connection.execute(sa.delete(BLOCKLIST).where(BLOCKLIST.c.entry_id.in_(chunk)))
        removed = sum(1 for digests in people if any(pair in stored for pair in digests.items()))
        return BlocklistChange(changed=removed, unchanged=len(people) - removed)

    async def entries(self) -> list[BarredEntry]:
        readable = {key.id for key in (await self._keyring.refresh()).index.readable}
        b = BLOCKLIST.c
        query = sa.select(b.entry_id, b.index_key_id, b.digest, b.added_at, b.added_by).order_by(
            b.added_at, b.entry_id, b.index_key_id
        )
        async with translated_errors(), self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        by_entry: dict[str, list[Any]] = {}
        for row in rows:
            by_entry.setdefault(row.entry_id, []).append(row)
        found = []
        for of_entry in by_entry.values():
            first = min(of_entry, key=lambda row: as_utc(row.added_at))
            newest = max(of_entry, key=lambda row: (row.index_key_id in readable, row.index_key_id))
            found.append(
                BarredEntry(
                    index_keys=tuple(sorted(row.index_key_id for row in of_entry)),
                    digest_prefix=newest.digest[:SHOWN_DIGITS],
                    added_at=as_utc(first.added_at),
                    added_by=first.added_by,
                    matches=any(row.index_key_id in readable for row in of_entry),
                )
            )
        return sorted(found, key=lambda entry: entry.added_at)

    def _insert_new(self) -> sa.Insert:
        insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        return insert(BLOCKLIST).on_conflict_do_nothing()


async def _stored(connection: Any, people: Sequence[Mapping[int, str]]) -> dict[tuple[int, str], str]:
    """The entry of each (index key, digest) of `people` that the blocklist holds."""
    wanted = sorted({digest for digests in people for digest in digests.values()})
    found: dict[tuple[int, str], str] = {}
    b = BLOCKLIST.c
    for chunk in _chunks(wanted):
        query = sa.select(b.index_key_id, b.digest, b.entry_id).where(b.digest.in_(chunk))
        for row in await connection.execute(query):
            found[row.index_key_id, row.digest] = row.entry_id
    return found


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


_BARRED = plain_sql(
    sa.select(sa.literal_column("1"))
    .select_from(BLOCKLIST)
    .where(
        BLOCKLIST.c.index_key_id == sa.bindparam("index_key_id"),
        BLOCKLIST.c.digest == sa.bindparam("digest"),
    )
)
